package models

import (
	"errors"
	"fmt"
	"strings"
)

// Model tiers, as used in mdsa.toml ([models.NAME] tier) and in a plugin's
// describe ("model": {"tier": ...}).
const (
	TierRouter   = "router"   // small classifier/embedding models used to route queries
	TierDomain   = "domain"   // the models domain plugins generate with
	TierReasoner = "reasoner" // the general fallback model
)

// Spec describes a model the registry can load.
type Spec struct {
	// Name identifies the model in the registry (the catalog key,
	// [models.NAME]). Required and unique.
	Name string
	// Tier is router, domain or reasoner (see the Tier constants); Pick
	// selects by it. Compared case-insensitively.
	Tier string
	// Path is the local GGUF file the loader opens.
	Path string
	// Quant names the quantization variant, e.g. "Q4_K_M" (informational;
	// preferences may name it).
	Quant string
	// ContextSize is the context of each sequence in tokens; 0 leaves it to
	// the loader's default.
	ContextSize int
	// Parallel is the number of concurrent generations (contexts); 0 leaves
	// it to the loader's default.
	Parallel int
	// Tags are further names a plugin's preference list may use for this
	// model, such as the family ("qwen2.5") or a size ("0.5b").
	Tags []string
	// MemoryBytes, when positive, is the memory the model needs; the
	// registry then does not call Options.Estimate for it.
	MemoryBytes int64
	// Backend, when set, names the group of remote servers that run the
	// model (the loader's business: Path is then empty). Informational to
	// the registry.
	Backend string
}

// validate checks the fields the registry relies on.
func (s Spec) validate() error {
	switch {
	case strings.TrimSpace(s.Name) == "":
		return errors.New("models: register: model spec has no name")
	case s.ContextSize < 0:
		return fmt.Errorf("models: register %q: negative context size %d", s.Name, s.ContextSize)
	case s.Parallel < 0:
		return fmt.Errorf("models: register %q: negative parallelism %d", s.Name, s.Parallel)
	case s.MemoryBytes < 0:
		return fmt.Errorf("models: register %q: negative memory size %d", s.Name, s.MemoryBytes)
	}
	return nil
}

// matches reports whether preference p names this model: its name, one of
// its tags, its name and quant as "name:quant", or a prefix of its name that
// ends at a separator ("qwen2.5" matches "qwen2.5-0.5b-instruct").
// Comparison ignores case.
func (s Spec) matches(p string) bool {
	p = strings.ToLower(strings.TrimSpace(p))
	if p == "" {
		return false
	}
	name := strings.ToLower(s.Name)
	if p == name || (s.Quant != "" && p == name+":"+strings.ToLower(s.Quant)) {
		return true
	}
	for _, t := range s.Tags {
		if strings.EqualFold(t, p) {
			return true
		}
	}
	if strings.HasPrefix(name, p) {
		next := name[len(p)]
		return strings.IndexByte("-_.:/ ", next) >= 0
	}
	return false
}
