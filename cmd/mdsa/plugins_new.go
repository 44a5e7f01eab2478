package main

import (
	"bufio"
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"text/template"

	"github.com/spf13/cobra"

	"github.com/mdsa-go/mdsa/sdk/go/abi"
)

// templates holds one directory of plugin project templates per language
// (see scaffoldFiles for the naming rules).
//
//go:embed all:templates
var templates embed.FS

// mdsaModule is the module path of the MDSA source tree, which holds the SDKs.
const mdsaModule = "github.com/mdsa-go/mdsa"

// scaffoldLang returns, for a --lang value, its template directory and the
// SDK file that must exist in the MDSA tree for it.
func scaffoldLang(lang string) (dir, sdkFile string, ok bool) {
	switch strings.ToLower(lang) {
	case "go":
		return "go", "sdk/go/plugin.go", true
	case "c":
		return "c", "sdk/c/mdsa.h", true
	case "rust":
		return "rust", "sdk/rust/mdsa.rs", true
	case "assemblyscript":
		return "assemblyscript", "sdk/assemblyscript/assembly/index.ts", true
	}
	return "", "", false
}

func (a *app) pluginsNewCmd() *cobra.Command {
	var lang, dir, sdkDir string
	cmd := &cobra.Command{
		Use:   "new --lang go|assemblyscript|c|rust NAME",
		Short: "Scaffold a new domain plugin project",
		Long: "Creates DIR (default ./NAME) with a plugin named NAME written against the SDK of the chosen\n" +
			"language, placeholder keywords and examples, a build command and a README. The project refers\n" +
			"to the SDKs in the MDSA source tree by relative path: the tree is found above DIR or the\n" +
			"working directory, or given with --sdk. The result builds as is and passes `mdsa plugins test`.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			files, err := scaffold(lang, args[0], dir, sdkDir)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.out, "created %s plugin %q in %s:\n", lang, args[0], files.dir)
			for _, f := range files.names {
				fmt.Fprintf(a.out, "  %s\n", f)
			}
			fmt.Fprintf(a.out, "next: replace the placeholder keywords and examples, then build (see %s) and run `mdsa plugins test`\n",
				filepath.Join(files.dir, "README.md"))
			return nil
		},
	}
	cmd.Flags().StringVar(&lang, "lang", "", "language: go, assemblyscript, c or rust (required)")
	cmd.Flags().StringVar(&dir, "dir", "", "directory to create (default ./NAME); it must not exist")
	cmd.Flags().StringVar(&sdkDir, "sdk", "", "the MDSA source tree holding the SDKs (default: found above DIR or the working directory)")
	_ = cmd.MarkFlagRequired("lang")
	return cmd
}

// scaffoldResult names what scaffold wrote.
type scaffoldResult struct {
	dir   string   // the project directory
	names []string // files, relative to dir
}

// scaffoldData is what the templates see.
type scaffoldData struct {
	Name        string   // the plugin name
	Crate       string   // Name as a Rust crate name
	Topic       string   // Name in words, for prose
	Description string   // the manifest description
	System      string   // the system prompt
	Keywords    []string // placeholder keywords
	Examples    []string // placeholder example questions
	SDK         string   // the MDSA tree, relative to the project directory (slashes)
	OwnModule   bool     // go: the project has its own go.mod
}

// validScaffoldName reports whether name is a plugin name every template
// language accepts: a valid manifest name that starts with a letter.
func validScaffoldName(name string) bool {
	return abi.ValidName(name) && name[0] >= 'a' && name[0] <= 'z'
}

// scaffold writes a plugin project for lang named name into dir (default
// ./name), which must not exist. sdkDir is the MDSA tree ("" to search).
func scaffold(lang, name, dir, sdkDir string) (scaffoldResult, error) {
	lang = strings.ToLower(lang)
	langDir, sdkFile, ok := scaffoldLang(lang)
	if !ok {
		return scaffoldResult{}, fmt.Errorf("plugins new: unknown --lang %q (want go, assemblyscript, c or rust)", lang)
	}
	if !validScaffoldName(name) {
		return scaffoldResult{}, fmt.Errorf("plugins new: invalid plugin name %q: use 1-%d lower-case letters, digits, '-' or '_', starting with a letter",
			name, abi.MaxNameLen)
	}
	if dir == "" {
		dir = name
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return scaffoldResult{}, fmt.Errorf("plugins new: %w", err)
	}
	if _, err := os.Lstat(abs); err == nil {
		return scaffoldResult{}, fmt.Errorf("plugins new: %s already exists: choose another --dir or remove it", abs)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return scaffoldResult{}, fmt.Errorf("plugins new: %w", err)
	}
	root, err := findMDSATree(sdkDir, filepath.Dir(abs))
	if err != nil {
		return scaffoldResult{}, fmt.Errorf("plugins new: %w", err)
	}
	if _, err := os.Stat(filepath.Join(root, filepath.FromSlash(sdkFile))); err != nil {
		return scaffoldResult{}, fmt.Errorf("plugins new: the %s SDK is not in %s (no %s)", lang, root, sdkFile)
	}
	rel, err := filepath.Rel(abs, root)
	if err != nil {
		rel = root
	}
	data := scaffoldPlaceholders(name)
	data.SDK = filepath.ToSlash(rel)
	var goMod, goSum []byte
	if lang == "go" {
		// A plugin inside the MDSA module (e.g. plugins/NAME) is one of its
		// packages; anywhere else it gets a module that uses the tree.
		if mod, _ := enclosingModule(filepath.Dir(abs)); mod != root {
			data.OwnModule = true
			if goMod, goSum, err = goModule(root, name, data.SDK); err != nil {
				return scaffoldResult{}, fmt.Errorf("plugins new: %w", err)
			}
		}
	}
	files, err := scaffoldFiles(langDir, data)
	if err != nil {
		return scaffoldResult{}, fmt.Errorf("plugins new: %w", err)
	}
	if goMod != nil {
		files["go.mod"] = scaffoldFile{body: goMod, mode: 0o644}
		files["go.sum"] = scaffoldFile{body: goSum, mode: 0o644}
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return scaffoldResult{}, fmt.Errorf("plugins new: %w", err)
	}
	res := scaffoldResult{dir: abs}
	for n := range files {
		res.names = append(res.names, n)
	}
	sort.Strings(res.names)
	for _, n := range res.names {
		f := files[n]
		if err := os.WriteFile(filepath.Join(abs, n), f.body, f.mode); err != nil {
			_ = os.RemoveAll(abs) // created above: nothing of the user's is in it
			return scaffoldResult{}, fmt.Errorf("plugins new: %w", err)
		}
	}
	return res, nil
}

// scaffoldPlaceholders makes the placeholder manifest text for a domain
// called name: realistic but generic keywords and questions.
func scaffoldPlaceholders(name string) scaffoldData {
	topic := strings.TrimSpace(strings.NewReplacer("-", " ", "_", " ").Replace(name))
	topic = strings.Join(strings.Fields(topic), " ")
	return scaffoldData{
		Name:        name,
		Crate:       strings.ReplaceAll(name, "-", "_"),
		Topic:       topic,
		Description: "Questions about " + topic + ": getting started, how things work, common problems and next steps.",
		System: "You are a helpful, accurate assistant for questions about " + topic + ". " +
			"Answer clearly in a few short paragraphs or a numbered list of steps. " +
			"If you are not sure, say so and suggest where the user can check. " +
			"Do not repeat personal details such as email addresses or phone numbers. " +
			"The user's locale, if known: {{context.locale|not stated}}.",
		Keywords: []string{
			topic, topic + " help", topic + " question", topic + " basics", topic + " tips",
			topic + " problem", topic + " advice", "learn " + topic,
		},
		Examples: []string{
			"How do I get started with " + topic + "?",
			"What are the basics of " + topic + " that a beginner should know?",
			"What are the most common mistakes people make with " + topic + "?",
			"Can you explain this " + topic + " term in simple words?",
			"I have a problem with " + topic + " and I'm not sure what to do next",
			"What's the difference between the main options in " + topic + "?",
			"Is there a checklist I can follow for " + topic + "?",
			"where can i learn more about " + topic,
		},
	}
}

type scaffoldFile struct {
	body []byte
	mode os.FileMode
}

// scaffoldFiles renders the templates of one language. In a template's
// path, "__NAME__" becomes the plugin name, ".tmpl" is dropped and
// "gitignore" becomes ".gitignore"; *.sh files are executable. Templates
// use [[ ]] as delimiters, since the prompt templates they contain use
// {{ }}; [[q X]] writes X as a double-quoted string literal valid in Go, C,
// Rust and TypeScript (the placeholder text is printable ASCII).
func scaffoldFiles(langDir string, data scaffoldData) (map[string]scaffoldFile, error) {
	base := path.Join("templates", langDir)
	entries, err := templates.ReadDir(base)
	if err != nil {
		return nil, fmt.Errorf("templates for %s: %w", langDir, err)
	}
	funcs := template.FuncMap{"q": strconv.Quote}
	out := make(map[string]scaffoldFile, len(entries))
	for _, e := range entries {
		src, err := templates.ReadFile(path.Join(base, e.Name()))
		if err != nil {
			return nil, err
		}
		t, err := template.New(e.Name()).Delims("[[", "]]").Funcs(funcs).Option("missingkey=error").Parse(string(src))
		if err != nil {
			return nil, fmt.Errorf("template %s/%s: %w", langDir, e.Name(), err)
		}
		var b bytes.Buffer
		if err := t.Execute(&b, data); err != nil {
			return nil, fmt.Errorf("template %s/%s: %w", langDir, e.Name(), err)
		}
		name := strings.ReplaceAll(strings.TrimSuffix(e.Name(), ".tmpl"), "__NAME__", data.Name)
		if name == "gitignore" {
			name = ".gitignore"
		}
		mode := os.FileMode(0o644)
		if strings.HasSuffix(name, ".sh") {
			mode = 0o755
		}
		out[name] = scaffoldFile{body: b.Bytes(), mode: mode}
	}
	return out, nil
}

// findMDSATree returns the root of the MDSA source tree: explicit if set
// (it must be one), else the first directory holding the MDSA go.mod above
// from or above the working directory.
func findMDSATree(explicit, from string) (string, error) {
	if explicit != "" {
		abs, err := filepath.Abs(explicit)
		if err != nil {
			return "", err
		}
		if modulePath(filepath.Join(abs, "go.mod")) != mdsaModule {
			return "", fmt.Errorf("--sdk %s is not the MDSA source tree (no go.mod of module %s there)", explicit, mdsaModule)
		}
		return abs, nil
	}
	starts := []string{from}
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	for _, d := range starts {
		for {
			if modulePath(filepath.Join(d, "go.mod")) == mdsaModule {
				return d, nil
			}
			parent := filepath.Dir(d)
			if parent == d {
				break
			}
			d = parent
		}
	}
	return "", fmt.Errorf("cannot find the MDSA source tree (module %s), whose SDKs the project uses: "+
		"create the plugin inside a checkout or pass --sdk PATH", mdsaModule)
}

// enclosingModule returns the directory of the nearest go.mod at or above
// dir (which may not exist yet), or "".
func enclosingModule(dir string) (string, bool) {
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, true
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", false
		}
		dir = parent
	}
}

// modulePath returns the module path declared by the go.mod file at p, or "".
func modulePath(p string) string {
	f, err := os.Open(p)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if rest, ok := strings.CutPrefix(line, "module"); ok && (rest == "" || rest[0] == ' ' || rest[0] == '\t') {
			return strings.Trim(strings.TrimSpace(rest), `"`)
		}
	}
	return ""
}

// goModule makes the go.mod and go.sum of a Go plugin outside the MDSA
// module: it requires the MDSA module, replaced by the tree at rel, with the
// tree's Go version; go.sum is the tree's (a superset of what the plugin's
// build needs), so the project builds offline.
func goModule(root, name, rel string) (goMod, goSum []byte, err error) {
	rootMod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		return nil, nil, err
	}
	goVersion := "1.26.0"
	for _, line := range strings.Split(string(rootMod), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "go "); ok {
			goVersion = strings.TrimSpace(v)
			break
		}
	}
	goSum, err = os.ReadFile(filepath.Join(root, "go.sum"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, nil, err
	}
	if !filepath.IsAbs(rel) && !strings.HasPrefix(rel, "./") && !strings.HasPrefix(rel, "../") && rel != "." && rel != ".." {
		rel = "./" + rel
	}
	if strings.ContainsAny(rel, " \t\"") {
		rel = strconv.Quote(rel)
	}
	goMod = fmt.Appendf(nil, "module example.com/mdsa-plugins/%s\n\ngo %s\n\nrequire %s v0.0.0\n\nreplace %s => %s\n",
		name, goVersion, mdsaModule, mdsaModule, rel)
	return goMod, goSum, nil
}
