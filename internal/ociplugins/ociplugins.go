// Package ociplugins stores MDSA plugins in OCI registries (any registry
// of the OCI distribution spec: the CNCF distribution server, Harbor,
// GHCR, ECR...) as artifacts of their own type, and watches references so
// that every replica swaps in a new version when its tag moves.
//
// An artifact is an OCI image manifest (version 1.1 with artifactType, or
// 1.0 with the type as the config's media type where a registry refuses
// 1.1) with one layer: the module, media type LayerMediaType, titled
// NAME.wasm. Built on oras-go.
package ociplugins

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/retry"

	"github.com/mdsa-go/mdsa/sdk/go/abi"
)

// Media types of a plugin artifact.
const (
	ArtifactType   = "application/vnd.mdsa.plugin.v1"
	LayerMediaType = "application/vnd.mdsa.plugin.wasm.v1"
)

// Bounds of what a pull reads: a manifest, and a module (the admin API's
// cap).
const (
	maxManifestBytes = 1 << 20
	MaxModuleBytes   = 64 << 20
)

// Ref is a parsed oci://REGISTRY/REPOSITORY:TAG or
// oci://REGISTRY/REPOSITORY@sha256:HEX reference.
type Ref struct {
	Registry   string // host[:port]
	Repository string
	Tag        string // "" when pinned by Digest
	Digest     string
}

// ParseRef reads a reference; the oci:// scheme is required, so that a
// reference is never mistaken for a file name.
func ParseRef(s string) (Ref, error) {
	rest, ok := strings.CutPrefix(s, "oci://")
	if !ok {
		return Ref{}, fmt.Errorf("ociplugins: %q: want oci://REGISTRY/REPOSITORY:TAG or oci://REGISTRY/REPOSITORY@sha256:...", s)
	}
	host, path, ok := strings.Cut(rest, "/")
	if !ok || host == "" || path == "" {
		return Ref{}, fmt.Errorf("ociplugins: %q: no repository after the registry", s)
	}
	var r Ref
	r.Registry = host
	if repo, dg, found := strings.Cut(path, "@"); found {
		d, err := digest.Parse(dg)
		if err != nil {
			return Ref{}, fmt.Errorf("ociplugins: %q: bad digest: %w", s, err)
		}
		r.Repository, r.Digest = repo, d.String()
	} else if i := strings.LastIndexByte(path, ':'); i > strings.LastIndexByte(path, '/') {
		r.Repository, r.Tag = path[:i], path[i+1:]
	} else {
		r.Repository, r.Tag = path, "latest"
	}
	// Check the whole through oras' own parser (repository and tag syntax).
	if _, err := remote.NewRepository(r.Registry + "/" + r.Repository); err != nil {
		return Ref{}, fmt.Errorf("ociplugins: %q: %w", s, err)
	}
	if r.Tag != "" && !validTag(r.Tag) {
		return Ref{}, fmt.Errorf("ociplugins: %q: bad tag %q", s, r.Tag)
	}
	return r, nil
}

// validTag follows the distribution spec: [A-Za-z0-9_][A-Za-z0-9._-]{0,127}.
func validTag(t string) bool {
	if t == "" || len(t) > 128 {
		return false
	}
	for i, c := range t {
		ok := c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || (i > 0 && (c == '.' || c == '-'))
		if !ok {
			return false
		}
	}
	return true
}

// String is the reference as ParseRef reads it.
func (r Ref) String() string {
	if r.Digest != "" {
		return "oci://" + r.Registry + "/" + r.Repository + "@" + r.Digest
	}
	return "oci://" + r.Registry + "/" + r.Repository + ":" + r.Tag
}

// reference is the tag or digest part for oras.
func (r Ref) reference() string {
	if r.Digest != "" {
		return r.Digest
	}
	return r.Tag
}

// Client talks to registries.
type Client struct {
	// PlainHTTP uses http:// (a registry on loopback without TLS).
	PlainHTTP bool
	// Username and Password, when set, authenticate (basic or token
	// auth, as the registry asks).
	Username, Password string
	// HTTP is the underlying client; nil uses one with retries.
	HTTP *http.Client
}

func (c Client) repo(r Ref) (*remote.Repository, error) {
	repo, err := remote.NewRepository(r.Registry + "/" + r.Repository)
	if err != nil {
		return nil, fmt.Errorf("ociplugins: %s: %w", r, err)
	}
	repo.PlainHTTP = c.PlainHTTP
	hc := c.HTTP
	if hc == nil {
		hc = retry.DefaultClient
	}
	ac := &auth.Client{Client: hc, Cache: auth.NewCache()}
	if c.Username != "" || c.Password != "" {
		ac.Credential = auth.StaticCredential(r.Registry, auth.Credential{Username: c.Username, Password: c.Password})
	}
	repo.Client = ac
	return repo, nil
}

// Push stores wasm as the plugin name at ref (a tag) and returns the
// manifest's digest. annotations are added to the manifest (a version,
// say).
func (c Client) Push(ctx context.Context, ref Ref, name string, wasm []byte, annotations map[string]string) (string, error) {
	if ref.Tag == "" {
		return "", fmt.Errorf("ociplugins: push to %s: name a tag, not a digest", ref)
	}
	if !abi.ValidName(name) {
		return "", fmt.Errorf("ociplugins: push: %q is not a plugin name", name)
	}
	if len(wasm) == 0 || len(wasm) > MaxModuleBytes {
		return "", fmt.Errorf("ociplugins: push: a module of %d bytes (want 1 to %d)", len(wasm), MaxModuleBytes)
	}
	repo, err := c.repo(ref)
	if err != nil {
		return "", err
	}
	layer := content.NewDescriptorFromBytes(LayerMediaType, wasm)
	layer.Annotations = map[string]string{ocispec.AnnotationTitle: name + ".wasm"}
	if err := repo.Push(ctx, layer, bytes.NewReader(wasm)); err != nil && !errors.Is(err, errdef.ErrAlreadyExists) {
		return "", fmt.Errorf("ociplugins: pushing %s's module to %s: %w", name, ref, err)
	}
	ann := map[string]string{ocispec.AnnotationTitle: name, ocispec.AnnotationCreated: time.Now().UTC().Format(time.RFC3339)}
	for k, v := range annotations {
		ann[k] = v
	}
	opts := oras.PackManifestOptions{Layers: []ocispec.Descriptor{layer}, ManifestAnnotations: ann}
	desc, err := oras.PackManifest(ctx, repo, oras.PackManifestVersion1_1, ArtifactType, opts)
	if err != nil {
		// A registry that predates image-spec 1.1 may refuse artifactType
		// or the empty config: the 1.0 form names the type in the config.
		desc, err = oras.PackManifest(ctx, repo, oras.PackManifestVersion1_0, ArtifactType, opts)
		if err != nil {
			return "", fmt.Errorf("ociplugins: pushing %s's manifest to %s: %w", name, ref, err)
		}
	}
	if err := repo.Tag(ctx, desc, ref.Tag); err != nil {
		return "", fmt.Errorf("ociplugins: tagging %s: %w", ref, err)
	}
	return desc.Digest.String(), nil
}

// Resolve returns the digest ref points at now.
func (c Client) Resolve(ctx context.Context, ref Ref) (string, error) {
	repo, err := c.repo(ref)
	if err != nil {
		return "", err
	}
	desc, err := repo.Resolve(ctx, ref.reference())
	if err != nil {
		return "", fmt.Errorf("ociplugins: resolving %s: %w", ref, err)
	}
	return desc.Digest.String(), nil
}

// Plugin is a pulled plugin.
type Plugin struct {
	// Name is the plugin's name, from the module layer's title (NAME.wasm).
	Name string
	Wasm []byte
	// Digest is the manifest's digest: what a replica compares.
	Digest string
	// Annotations are the manifest's.
	Annotations map[string]string
}

// Pull fetches the plugin at ref, checking every digest and bound.
func (c Client) Pull(ctx context.Context, ref Ref) (Plugin, error) {
	repo, err := c.repo(ref)
	if err != nil {
		return Plugin{}, err
	}
	desc, raw, err := oras.FetchBytes(ctx, repo, ref.reference(), oras.FetchBytesOptions{MaxBytes: maxManifestBytes})
	if err != nil {
		return Plugin{}, fmt.Errorf("ociplugins: fetching %s: %w", ref, err)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return Plugin{}, fmt.Errorf("ociplugins: %s: the manifest is not an OCI image manifest: %w", ref, err)
	}
	if m.ArtifactType != ArtifactType && m.Config.MediaType != ArtifactType {
		return Plugin{}, fmt.Errorf("ociplugins: %s is not an MDSA plugin (artifact type %q, config %q; want %s)",
			ref, m.ArtifactType, m.Config.MediaType, ArtifactType)
	}
	var layer *ocispec.Descriptor
	for i := range m.Layers {
		if m.Layers[i].MediaType == LayerMediaType {
			if layer != nil {
				return Plugin{}, fmt.Errorf("ociplugins: %s has more than one module layer", ref)
			}
			layer = &m.Layers[i]
		}
	}
	if layer == nil {
		return Plugin{}, fmt.Errorf("ociplugins: %s has no layer of type %s", ref, LayerMediaType)
	}
	if layer.Size <= 0 || layer.Size > MaxModuleBytes {
		return Plugin{}, fmt.Errorf("ociplugins: %s: a module of %d bytes (want 1 to %d)", ref, layer.Size, MaxModuleBytes)
	}
	name, ok := strings.CutSuffix(layer.Annotations[ocispec.AnnotationTitle], ".wasm")
	if !ok || !abi.ValidName(name) {
		return Plugin{}, fmt.Errorf("ociplugins: %s: the module's title %q is not NAME.wasm with a plugin name", ref, layer.Annotations[ocispec.AnnotationTitle])
	}
	wasm, err := content.FetchAll(ctx, repo, *layer) // verifies size and digest
	if err != nil {
		return Plugin{}, fmt.Errorf("ociplugins: fetching %s's module: %w", ref, err)
	}
	return Plugin{Name: name, Wasm: wasm, Digest: desc.Digest.String(), Annotations: m.Annotations}, nil
}
