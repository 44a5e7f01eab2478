package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/mdsa-go/mdsa/host"
	"github.com/mdsa-go/mdsa/internal/knowledge"
)

// kbCmd is `mdsa kb`: the knowledge bases of a tenant, in the store the
// configuration names ([knowledge] path; the commands work whether or not
// the server has [knowledge] enabled, on the same file a running server
// uses).
func (a *app) kbCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "kb", Short: "Manage knowledge bases: add, list, rm, search"}
	var tenant string
	var asJSON bool
	cmd.PersistentFlags().StringVar(&tenant, "tenant", "", "the tenant whose knowledge bases to use (default: the default space, as on a server without tenants)")
	cmd.PersistentFlags().BoolVar(&asJSON, "json", false, "print JSON")

	withTenant := func(ctx context.Context, fn func(t *host.Tenant) error) error {
		cfg, err := a.loadConfig()
		if err != nil {
			return err
		}
		cfg.Knowledge.Enabled = true
		h, err := a.openHostWith(ctx, cfg)
		if err != nil {
			return err
		}
		defer h.Close()
		t, err := h.Tenant(tenant)
		if err != nil {
			return err
		}
		return fn(t)
	}

	var title, typ string
	add := &cobra.Command{
		Use:   "add KB FILE...",
		Short: "Ingest text, Markdown or HTML files (by extension: .txt, .md, .html; - reads stdin with --type)",
		Args:  cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			kb := args[0]
			if !knowledge.ValidKB(kb) {
				return fmt.Errorf("knowledge base name %q: want 1-64 of [a-z0-9_-], starting with a letter or digit", kb)
			}
			return withTenant(cmd.Context(), func(t *host.Tenant) error {
				var docs []knowledge.Document
				start := time.Now()
				var bytes int
				for _, path := range args[1:] {
					in, err := readDocument(path, typ, title, cmd.InOrStdin())
					if err != nil {
						return err
					}
					d, _, err := t.AddDocument(cmd.Context(), kb, in)
					if err != nil {
						return fmt.Errorf("%s: %w", path, err)
					}
					bytes += d.Bytes
					docs = append(docs, d)
					if !asJSON {
						fmt.Fprintf(a.out, "%s\t%s\t%d chunks\t%s\n", d.ID, path, d.Chunks, d.Title)
					}
				}
				if asJSON {
					return writeJSON(a.out, docs)
				}
				el := time.Since(start)
				fmt.Fprintf(a.errw, "%d documents, %d bytes in %s (%.1f MB/s)\n", len(docs), bytes, el.Round(time.Millisecond),
					float64(bytes)/1e6/max(el.Seconds(), 1e-9))
				return nil
			})
		},
	}
	add.Flags().StringVar(&title, "title", "", "the title (default: the document's own, or its first line)")
	add.Flags().StringVar(&typ, "type", "", "text, markdown or html (default: by the file's extension)")

	list := &cobra.Command{
		Use:   "list [KB]",
		Short: "List the knowledge bases, or the documents of one",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withTenant(cmd.Context(), func(t *host.Tenant) error {
				tw := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
				if len(args) == 0 {
					kbs, err := t.KnowledgeBases(cmd.Context())
					if err != nil {
						return err
					}
					if asJSON {
						return writeJSON(a.out, kbs)
					}
					fmt.Fprintln(tw, "KB\tDOCUMENTS\tCHUNKS\tBYTES\tUPDATED")
					for _, k := range kbs {
						fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\n", k.Name, k.Documents, k.Chunks, k.Bytes, k.Updated.Format(time.DateTime))
					}
					return tw.Flush()
				}
				var all []knowledge.Document
				before := ""
				for {
					docs, err := t.Documents(cmd.Context(), args[0], 100, before)
					if err != nil {
						return err
					}
					all = append(all, docs...)
					if len(docs) < 100 {
						break
					}
					before = docs[len(docs)-1].ID
				}
				if asJSON {
					return writeJSON(a.out, all)
				}
				fmt.Fprintln(tw, "ID\tTYPE\tCHUNKS\tBYTES\tTITLE\tSOURCE")
				for _, d := range all {
					fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\n", d.ID, d.Type, d.Chunks, d.Bytes, d.Title, d.Source)
				}
				return tw.Flush()
			})
		},
	}

	var all bool
	rm := &cobra.Command{
		Use:   "rm KB (DOC_ID... | --all)",
		Short: "Remove documents, or with --all the whole knowledge base",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if all == (len(args) > 1) {
				return errors.New("give document ids or --all, not both or neither")
			}
			return withTenant(cmd.Context(), func(t *host.Tenant) error {
				if all {
					n, err := t.DeleteKnowledgeBase(cmd.Context(), args[0])
					if err != nil {
						return err
					}
					fmt.Fprintf(a.out, "removed %s (%d documents)\n", args[0], n)
					return nil
				}
				for _, id := range args[1:] {
					if err := t.DeleteDocument(cmd.Context(), args[0], id); err != nil {
						return fmt.Errorf("%s: %w", id, err)
					}
					fmt.Fprintf(a.out, "removed %s\n", id)
				}
				return nil
			})
		},
	}
	rm.Flags().BoolVar(&all, "all", false, "remove the whole knowledge base")

	var topK int
	search := &cobra.Command{
		Use:   "search KB QUERY...",
		Short: "Show the passages that best match a query",
		Args:  cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withTenant(cmd.Context(), func(t *host.Tenant) error {
				start := time.Now()
				hits, _, err := t.SearchKnowledge(cmd.Context(), args[0], strings.Join(args[1:], " "), topK)
				if err != nil {
					return err
				}
				if asJSON {
					return writeJSON(a.out, hits)
				}
				for i, h := range hits {
					fmt.Fprintf(a.out, "[%d] %.4f  %s (%s, chunk %d)\n    %s\n", i+1, h.Score, h.Title, h.DocID, h.Chunk, clipLine(h.Text, 300))
				}
				fmt.Fprintf(a.errw, "%d passages in %s\n", len(hits), time.Since(start).Round(time.Microsecond))
				return nil
			})
		},
	}
	search.Flags().IntVarP(&topK, "top-k", "k", 5, "passages to show (1-50)")

	cmd.AddCommand(add, list, rm, search)
	return cmd
}

// readDocument reads one document to ingest: a file (its type from the
// extension unless typ is set) or "-" for stdin (typ required).
func readDocument(path, typ, title string, stdin io.Reader) (knowledge.Input, error) {
	var data []byte
	var err error
	if path == "-" {
		if typ == "" {
			return knowledge.Input{}, errors.New("-: say the type of stdin with --type text|markdown|html")
		}
		data, err = io.ReadAll(io.LimitReader(stdin, 64<<20))
	} else {
		data, err = os.ReadFile(path)
	}
	if err != nil {
		return knowledge.Input{}, err
	}
	if typ == "" {
		switch strings.ToLower(filepath.Ext(path)) {
		case ".txt", ".text":
			typ = knowledge.TypeText
		case ".md", ".markdown":
			typ = knowledge.TypeMarkdown
		case ".html", ".htm":
			typ = knowledge.TypeHTML
		default:
			return knowledge.Input{}, fmt.Errorf("%s: unsupported file type %q: use .txt, .md or .html (or --type)", path, filepath.Ext(path))
		}
	}
	source := path
	if path == "-" {
		source = ""
	}
	return knowledge.Input{Title: title, Source: source, Type: typ, Body: data}, nil
}

// clipLine shortens s to one line of at most n bytes.
func clipLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && s[cut]&0xC0 == 0x80 {
		cut--
	}
	return s[:cut] + "..."
}
