package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/mdsa-go/mdsa/host/config"
	"github.com/mdsa-go/mdsa/internal/bytesize"
	"github.com/mdsa-go/mdsa/internal/download"
)

// modelRef is one catalog variant resolved against a configuration.
type modelRef struct {
	Name, Quant string
	Model       config.Model
	Variant     config.Variant
	// Path is the local file: the variant's path, else its file, under
	// models_dir when relative.
	Path string
	// ModelsDir is the configuration's models_dir, made absolute.
	ModelsDir string
	// URL is where to download it: the variant's url, else the Hugging Face
	// address of repo/file; "" for a local-only variant.
	URL string
	// Engine is true for the variant the engine uses (engine.model/quant).
	Engine bool
}

// String is NAME:QUANT.
func (r modelRef) String() string { return r.Name + ":" + r.Quant }

// resolveModelRef resolves NAME[:QUANT] against cfg's catalog. Without a
// quant it picks engine.quant when NAME is engine.model, else the first
// variant by name; quants match case-insensitively. hfEndpoint is the
// Hugging Face address for repo/file variants ("" = huggingface.co).
func resolveModelRef(cfg config.Config, ref, hfEndpoint string) (modelRef, error) {
	name, quant, _ := strings.Cut(ref, ":")
	m, ok := cfg.Models[name]
	if !ok {
		names := sortedKeys(cfg.Models)
		if len(names) == 0 {
			return modelRef{}, fmt.Errorf("model %q: the catalog in %s is empty (add [models.NAME] tables)", name, cfg.File)
		}
		return modelRef{}, fmt.Errorf("model %q is not in the catalog of %s (have: %s)", name, cfg.File, strings.Join(names, ", "))
	}
	if m.Backend != "" {
		return modelRef{}, fmt.Errorf("model %q in %s runs on the servers of backends.%s: there is no file to fetch", name, cfg.File, m.Backend)
	}
	if quant == "" && name == cfg.Engine.Model {
		quant = cfg.Engine.Quant
	}
	if quant != "" {
		if _, ok := m.Variants[quant]; !ok {
			for q := range m.Variants {
				if strings.EqualFold(q, quant) {
					quant = q
					break
				}
			}
		}
	}
	quant, v, err := m.Variant(quant)
	if err != nil {
		return modelRef{}, fmt.Errorf("model %q in %s: %w", name, cfg.File, err)
	}
	return variantRef(cfg, name, quant, m, v, hfEndpoint)
}

func variantRef(cfg config.Config, name, quant string, m config.Model, v config.Variant, hfEndpoint string) (modelRef, error) {
	where := fmt.Sprintf("%s: models.%s.variants.%s", cfg.File, name, quant)
	dir, err := filepath.Abs(cfg.Resolve(cfg.Host.ModelsDir))
	if err != nil {
		return modelRef{}, fmt.Errorf("%s: models_dir: %w", where, err)
	}
	r := modelRef{Name: name, Quant: quant, Model: m, Variant: v, ModelsDir: dir,
		Engine: name == cfg.Engine.Model && (quant == cfg.Engine.Quant || cfg.Engine.Quant == "" && firstQuant(m) == quant)}
	switch {
	case v.Path != "":
		r.Path = v.Path
		if !filepath.IsAbs(r.Path) {
			r.Path = filepath.Join(dir, r.Path)
		}
	case v.File != "":
		if !filepath.IsLocal(filepath.FromSlash(v.File)) {
			return modelRef{}, fmt.Errorf("%s: file %q must be a relative name inside models_dir", where, v.File)
		}
		r.Path = filepath.Join(dir, filepath.FromSlash(v.File))
	default:
		return modelRef{}, fmt.Errorf("%s: set file (with repo or url) or path", where)
	}
	switch {
	case v.URL != "":
		r.URL = v.URL
	case v.Repo != "":
		if v.File == "" {
			return modelRef{}, fmt.Errorf("%s: repo %q needs file", where, v.Repo)
		}
		if hfEndpoint == "" {
			hfEndpoint = download.DefaultHuggingFaceEndpoint
		}
		if r.URL, err = download.HuggingFaceURLAt(hfEndpoint, v.Repo, v.File, ""); err != nil {
			return modelRef{}, fmt.Errorf("%s: %w", where, err)
		}
	}
	return r, nil
}

// catalogRefs resolves every variant of the catalog, sorted by name and quant.
func catalogRefs(cfg config.Config, hfEndpoint string) ([]modelRef, error) {
	var refs []modelRef
	for _, name := range sortedKeys(cfg.Models) {
		m := cfg.Models[name]
		for _, q := range sortedKeys(m.Variants) {
			r, err := variantRef(cfg, name, q, m, m.Variants[q], hfEndpoint)
			if err != nil {
				return nil, err
			}
			refs = append(refs, r)
		}
	}
	return refs, nil
}

func firstQuant(m config.Model) string {
	if qs := sortedKeys(m.Variants); len(qs) > 0 {
		return qs[0]
	}
	return ""
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// insideDir reports whether path lies inside dir, following symbolic links
// in the directories above path (not path itself, which rm unlinks).
func insideDir(dir, path string) bool {
	real := func(p string) string {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			return r
		}
		return filepath.Clean(p)
	}
	rel, err := filepath.Rel(real(dir), filepath.Join(real(filepath.Dir(path)), filepath.Base(path)))
	return err == nil && filepath.IsLocal(rel)
}

// modelsPullCmd is `mdsa models pull NAME[:QUANT]`.
func (a *app) modelsPullCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "pull NAME[:QUANT]",
		Short: "Download a catalog model into models_dir (resumable, verified)",
		Long: "Downloads the model variant from its url, or from Hugging Face (repo and file; HF_ENDPOINT selects\n" +
			"a mirror) into models_dir. An interrupted download resumes where it stopped. The file is checked\n" +
			"against the catalog's sha256 and size when given; without a sha256 the computed one is printed\n" +
			"for you to record in mdsa.toml. Gated or private repositories need HF_TOKEN.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			err := a.pull(cmd.Context(), args[0], asJSON)
			if err != nil && asJSON {
				writeJSON(a.out, map[string]string{"status": "error", "error": err.Error()})
				fmt.Fprintln(a.errw, "mdsa:", err)
				return silentError{err}
			}
			return err
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}

// pullResult is what `models pull --json` prints.
type pullResult struct {
	Status         string `json:"status"`
	Name           string `json:"name"`
	Quant          string `json:"quant"`
	URL            string `json:"url"`
	Path           string `json:"path"`
	Bytes          int64  `json:"bytes"`
	SHA256         string `json:"sha256"`
	SHA256Recorded bool   `json:"sha256_recorded"`
	Resumed        bool   `json:"resumed"`
	AlreadyPresent bool   `json:"already_present"`
}

func (a *app) pull(ctx context.Context, refArg string, asJSON bool) error {
	if ctx == nil {
		ctx = context.Background()
	}
	cfg, err := a.loadConfig()
	if err != nil {
		return err
	}
	ref, err := resolveModelRef(cfg, refArg, os.Getenv("HF_ENDPOINT"))
	if err != nil {
		return err
	}
	if ref.URL == "" {
		return fmt.Errorf("%s has no download source (set url, or repo and file, in %s); its local file is %s",
			ref, cfg.File, ref.Path)
	}
	prog := newPullProgress(a.errw, ref.String(), isTerminal(a.errw))
	fmt.Fprintf(a.errw, "pulling %s from %s\n", ref, ref.URL)
	res, err := download.Fetch(ctx, download.Request{
		URL: ref.URL, Dest: ref.Path, SHA256: ref.Variant.SHA256, Size: ref.Variant.Size, Progress: prog.update,
	}, download.Options{Token: download.TokenFromEnv(os.LookupEnv), Logger: a.logger(cfg)})
	prog.finish(err == nil)
	if err != nil {
		var dns *net.DNSError
		if errors.As(err, &dns) || errors.Is(err, syscall.ENETUNREACH) || errors.Is(err, syscall.EHOSTUNREACH) {
			return fmt.Errorf("pull %s: %w\n(no network to %s? Ways forward: HF_ENDPOINT=URL of a Hugging Face mirror; "+
				"download the file elsewhere and pass --model-file PATH to ask or serve; or keep the synthetic test model, "+
				"which ask and serve use until a model is downloaded)", ref, err, ref.URL)
		}
		return fmt.Errorf("pull %s: %w", ref, err)
	}
	recorded := ref.Variant.SHA256 != ""
	if asJSON {
		return writeJSON(a.out, pullResult{Status: "ok", Name: ref.Name, Quant: ref.Quant, URL: ref.URL, Path: res.Path,
			Bytes: res.Bytes, SHA256: res.SHA256, SHA256Recorded: recorded, Resumed: res.Resumed, AlreadyPresent: res.AlreadyPresent})
	}
	how := "downloaded"
	switch {
	case res.AlreadyPresent:
		how = "already present"
	case res.Resumed:
		how = "downloaded (resumed)"
	}
	fmt.Fprintf(a.out, "%s: %s, %s (%d bytes) at %s\nsha256 %s", ref, how, bytesize.Format(res.Bytes), res.Bytes, res.Path, res.SHA256)
	if recorded {
		fmt.Fprintln(a.out, " (matches the catalog)")
		return nil
	}
	fmt.Fprintf(a.out, "\n\nThe catalog has no sha256 for %s. Record it in %s so that later downloads are verified:\n\n"+
		"[models.%q.variants.%s]\nsha256 = %q\n", ref, cfg.File, ref.Name, ref.Quant, res.SHA256)
	if ref.Variant.Size == 0 {
		fmt.Fprintf(a.out, "size = %d\n", res.Bytes)
	}
	return nil
}

// pullProgressEvery is how often progress lines go to a non-terminal.
const pullProgressEvery = 5 * time.Second

// pullProgress shows a download's progress: a bar on a terminal, a line
// every few seconds otherwise.
type pullProgress struct {
	w          io.Writer
	label      string
	tty        bool
	every      time.Duration // between lines when not a terminal
	bar        *progressbar.ProgressBar
	start      time.Time
	last       time.Time
	startBytes int64
	started    bool
}

func newPullProgress(w io.Writer, label string, tty bool) *pullProgress {
	return &pullProgress{w: w, label: label, tty: tty, every: pullProgressEvery}
}

func (p *pullProgress) update(pr download.Progress) {
	now := time.Now()
	if !p.started {
		p.started, p.start, p.last, p.startBytes = true, now, now, pr.Bytes
		if pr.Resumed > 0 {
			fmt.Fprintf(p.w, "resuming at %s\n", bytesize.Format(pr.Resumed))
		}
	}
	if p.tty {
		if p.bar == nil {
			p.bar = progressbar.NewOptions64(pr.Total,
				progressbar.OptionSetWriter(p.w),
				progressbar.OptionSetDescription(p.label),
				progressbar.OptionShowBytes(true),
				progressbar.OptionShowTotalBytes(true),
				progressbar.OptionShowCount(),
				progressbar.OptionSetWidth(30),
				progressbar.OptionThrottle(100*time.Millisecond),
				progressbar.OptionSetPredictTime(true),
				progressbar.OptionFullWidth(),
			)
		}
		if pr.Total > 0 && p.bar.GetMax64() != pr.Total {
			p.bar.ChangeMax64(pr.Total)
		}
		p.bar.Set64(pr.Bytes)
		return
	}
	if now.Sub(p.last) < p.every {
		return
	}
	p.last = now
	// The rate once there is one (the first report may come before any
	// byte or any time: 0/0).
	rate := ""
	if secs := now.Sub(p.start).Seconds(); secs > 0 && pr.Bytes > p.startBytes {
		rate = ", " + bytesize.Format(int64(float64(pr.Bytes-p.startBytes)/secs)) + "/s"
	}
	if pr.Total > 0 {
		fmt.Fprintf(p.w, "%s: %s of %s (%.0f%%)%s\n", p.label, bytesize.Format(pr.Bytes), bytesize.Format(pr.Total),
			100*float64(pr.Bytes)/float64(pr.Total), rate)
	} else {
		fmt.Fprintf(p.w, "%s: %s%s\n", p.label, bytesize.Format(pr.Bytes), rate)
	}
}

func (p *pullProgress) finish(ok bool) {
	if p.bar != nil {
		if ok {
			p.bar.Finish()
		}
		fmt.Fprintln(p.w)
	}
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// modelListEntry is one row of `models list`.
type modelListEntry struct {
	Name           string `json:"name"`
	Quant          string `json:"quant"`
	Tier           string `json:"tier"`
	Engine         bool   `json:"engine"`
	Path           string `json:"path"`
	Present        bool   `json:"present"`
	Bytes          int64  `json:"bytes"`
	ExpectedBytes  int64  `json:"expected_bytes,omitempty"`
	PartialBytes   int64  `json:"partial_bytes,omitempty"`
	SHA256         string `json:"sha256,omitempty"`
	SHA256Status   string `json:"sha256_status"`
	Source         string `json:"source"`
	ComputedSHA256 string `json:"computed_sha256,omitempty"`
}

// SHA256Status values: whether the catalog records a sum, and with
// --verify whether the file on disk matches it.
const (
	shaUnrecorded = "unrecorded"
	shaRecorded   = "recorded"
	shaVerified   = "verified"
	shaMismatch   = "mismatch"
)

// modelsListCmd is `mdsa models list`.
func (a *app) modelsListCmd() *cobra.Command {
	var asJSON, verify bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the model catalog and which files are present",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			cfg, err := a.loadConfig()
			if err != nil {
				return err
			}
			entries, err := listModels(ctx, cfg, os.Getenv("HF_ENDPOINT"), verify)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(a.out, entries)
			}
			if len(entries) == 0 {
				fmt.Fprintf(a.out, "the catalog in %s is empty\n", cfg.File)
				return nil
			}
			tw := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "\tNAME\tQUANT\tTIER\tPRESENT\tSIZE\tSHA256\tPATH")
			for _, e := range entries {
				mark, present, size := "", "no", "-"
				if e.Engine {
					mark = "*"
				}
				switch {
				case e.Present:
					present, size = "yes", bytesize.Format(e.Bytes)
				case e.PartialBytes > 0:
					present, size = "partial", bytesize.Format(e.PartialBytes)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", mark, e.Name, e.Quant, e.Tier, present, size, e.SHA256Status, e.Path)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			fmt.Fprintln(a.out, "* used by the engine (engine.model, engine.quant)")
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().BoolVar(&verify, "verify", false, "hash the files present and compare with the catalog's sha256")
	return cmd
}

// listModels describes every catalog variant and its local file.
func listModels(ctx context.Context, cfg config.Config, hfEndpoint string, verify bool) ([]modelListEntry, error) {
	refs, err := catalogRefs(cfg, hfEndpoint)
	if err != nil {
		return nil, err
	}
	entries := make([]modelListEntry, 0, len(refs))
	for _, r := range refs {
		e := modelListEntry{Name: r.Name, Quant: r.Quant, Tier: r.Model.Tier, Engine: r.Engine, Path: r.Path,
			ExpectedBytes: r.Variant.Size, SHA256: r.Variant.SHA256, Source: r.URL, SHA256Status: shaUnrecorded}
		if e.Source == "" {
			e.Source = "local"
		}
		if e.SHA256 != "" {
			e.SHA256Status = shaRecorded
		}
		if st, err := os.Stat(r.Path); err == nil && st.Mode().IsRegular() {
			e.Present, e.Bytes = true, st.Size()
		} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("models list: %w", err)
		}
		if st, err := os.Stat(download.PartialPath(r.Path)); err == nil {
			e.PartialBytes = st.Size()
		}
		if verify && e.Present {
			sum, _, err := download.HashFile(ctx, r.Path)
			if err != nil {
				return nil, fmt.Errorf("models list: %w", err)
			}
			e.ComputedSHA256 = sum
			switch {
			case e.SHA256 == "":
			case strings.EqualFold(sum, e.SHA256):
				e.SHA256Status = shaVerified
			default:
				e.SHA256Status = shaMismatch
			}
		}
		entries = append(entries, e)
	}
	return entries, nil
}

// modelsRmCmd is `mdsa models rm NAME[:QUANT]`.
func (a *app) modelsRmCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "rm NAME[:QUANT]",
		Short: "Delete a model's local file and any partial download (only inside models_dir)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if ctx == nil {
				ctx = context.Background()
			}
			cfg, err := a.loadConfig()
			if err != nil {
				return err
			}
			ref, err := resolveModelRef(cfg, args[0], os.Getenv("HF_ENDPOINT"))
			if err != nil {
				return err
			}
			if !insideDir(ref.ModelsDir, ref.Path) {
				return fmt.Errorf("models rm %s: %s is outside models_dir (%s); not deleting it", ref, ref.Path, ref.ModelsDir)
			}
			removed, err := download.Remove(ctx, ref.Path)
			if err != nil {
				return fmt.Errorf("models rm %s: %w", ref, err)
			}
			if removed == nil {
				removed = []string{}
			}
			if asJSON {
				return writeJSON(a.out, map[string]any{"name": ref.Name, "quant": ref.Quant, "path": ref.Path, "removed": removed})
			}
			if len(removed) == 0 {
				fmt.Fprintf(a.out, "%s is not downloaded (%s)\n", ref, ref.Path)
			}
			for _, p := range removed {
				fmt.Fprintf(a.out, "removed %s\n", p)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}
