package hardware

import (
	"bufio"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Fixture trees live in testdata/roots/NAME and are layered: later layers
// add or replace files of earlier ones. Two encodings keep them storable in
// a Go module zip (which refuses ':' in names and drops symbolic links):
// "%3A" in a path stands for ':', and each layer's SYMLINKS file lists
// "LINK TARGET" pairs (paths relative to the root) to create.
func buildRoot(t testing.TB, layers ...string) string {
	t.Helper()
	root := t.TempDir()
	for _, layer := range layers {
		src := filepath.Join("testdata", "roots", layer)
		err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, err := filepath.Rel(src, p)
			if err != nil {
				return err
			}
			if rel == "SYMLINKS" {
				return nil
			}
			dst := filepath.Join(root, unescape(rel))
			if d.IsDir() {
				return os.MkdirAll(dst, 0o755)
			}
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return os.WriteFile(dst, data, 0o644)
		})
		if err != nil {
			t.Fatalf("copying fixture %s: %v", layer, err)
		}
		f, err := os.Open(filepath.Join(src, "SYMLINKS"))
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			link, target, ok := strings.Cut(strings.TrimSpace(sc.Text()), " ")
			if !ok {
				continue
			}
			dst := filepath.Join(root, unescape(link))
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				t.Fatal(err)
			}
			_ = os.Remove(dst)
			if err := os.Symlink(unescape(target), dst); err != nil {
				t.Fatalf("fixture %s: %v", layer, err)
			}
		}
		f.Close()
	}
	return root
}

func unescape(p string) string { return strings.ReplaceAll(p, "%3A", ":") }

// noNVML is an NVMLLoader for a machine without NVML.
func noNVML(string) (NVMLLibrary, error) { return nil, ErrNVMLNotFound }

// smiFile is an NvidiaSMIRunner that prints a testdata file.
func smiFile(t testing.TB, name string) NvidiaSMIRunner {
	data, err := os.ReadFile(filepath.Join("testdata", "nvidia-smi", name))
	if err != nil {
		t.Fatal(err)
	}
	return func(ctx context.Context, args []string) ([]byte, error) {
		if strings.Join(args, " ") != strings.Join(NvidiaSMIArgs, " ") {
			t.Errorf("nvidia-smi args = %q", args)
		}
		return data, nil
	}
}

// env is a fake environment.
func env(kv ...string) func(string) (string, bool) {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

// detect runs Detect on fixture layers with an empty environment and no
// NVIDIA tools unless opts sets them.
func detect(t testing.TB, opts Options, layers ...string) Info {
	t.Helper()
	opts.Root = buildRoot(t, layers...)
	if opts.LookupEnv == nil {
		opts.LookupEnv = env()
	}
	if opts.NVML == nil {
		opts.NVML = noNVML
	}
	info, err := Detect(context.Background(), opts)
	if err != nil {
		t.Fatalf("Detect: %v", err)
	}
	return info
}

func hasWarning(info Info, substr string) bool {
	for _, w := range info.Warnings {
		if strings.Contains(w, substr) {
			return true
		}
	}
	return false
}
