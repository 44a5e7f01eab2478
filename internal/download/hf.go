package download

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// DefaultHuggingFaceEndpoint is the Hugging Face Hub address.
const DefaultHuggingFaceEndpoint = "https://huggingface.co"

// HuggingFaceURL returns the download address of file in the Hugging Face
// repository repo ("owner/name") at revision (a branch, tag or commit;
// "" means "main"): https://huggingface.co/REPO/resolve/REVISION/FILE.
func HuggingFaceURL(repo, file, revision string) (string, error) {
	return HuggingFaceURLAt(DefaultHuggingFaceEndpoint, repo, file, revision)
}

// HuggingFaceURLAt is HuggingFaceURL against another endpoint (a mirror,
// or a test server), as HF_ENDPOINT selects for Hugging Face's own tools.
func HuggingFaceURLAt(endpoint, repo, file, revision string) (string, error) {
	base, err := url.Parse(strings.TrimRight(endpoint, "/"))
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return "", fmt.Errorf("hugging face endpoint %q: want an http(s) URL", endpoint)
	}
	owner, name, ok := strings.Cut(repo, "/")
	if !ok || !validSegment(owner) || !validSegment(name) {
		return "", fmt.Errorf("hugging face repo %q: want OWNER/NAME", repo)
	}
	if file == "" || strings.HasPrefix(file, "/") || strings.Contains(file, "\\") {
		return "", fmt.Errorf("hugging face file %q: want a relative path inside the repository", file)
	}
	parts := strings.Split(file, "/")
	for i, p := range parts {
		if !validSegment(p) {
			return "", fmt.Errorf("hugging face file %q: bad path element %q", file, p)
		}
		parts[i] = url.PathEscape(p)
	}
	if revision == "" {
		revision = "main"
	}
	if err := checkText(revision); err != nil {
		return "", fmt.Errorf("hugging face revision %q: %w", revision, err)
	}
	// A revision such as refs/pr/1 travels as one escaped path element.
	return base.String() + "/" + url.PathEscape(owner) + "/" + url.PathEscape(name) +
		"/resolve/" + url.PathEscape(revision) + "/" + strings.Join(parts, "/"), nil
}

func validSegment(s string) bool {
	return s != "" && s != "." && s != ".." && checkText(s) == nil && !strings.ContainsAny(s, "/\\")
}

func checkText(s string) error {
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return errors.New("control character")
		}
	}
	return nil
}

// TokenFromEnv returns the Hugging Face access token from HF_TOKEN, or
// from the older HUGGING_FACE_HUB_TOKEN, via lookup (os.LookupEnv).
func TokenFromEnv(lookup func(string) (string, bool)) string {
	for _, k := range []string{"HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"} {
		if v, ok := lookup(k); ok && strings.TrimSpace(v) != "" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
