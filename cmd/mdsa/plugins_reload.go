package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mdsa-go/mdsa/internal/wire"
)

func (a *app) pluginsReloadCmd() *cobra.Command {
	var serverURL, key string
	var js bool
	cmd := &cobra.Command{
		Use:   "reload",
		Short: "Make a running mdsa serve reload its plugins directory",
		Long: `Ask a running server (its admin API, POST /admin/plugins/reload) to bring its plugins in line
with its plugins directory: new files are added, changed ones checked and swapped in under live
traffic, missing ones drained and removed. A version that fails its checks is refused and the
running one keeps serving; the command then exits non-zero. The admin key comes from --admin-key
or MDSA_ADMIN_KEY.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if serverURL == "" {
				cfg, err := a.loadConfig()
				if err != nil {
					return err
				}
				serverURL = "http://" + cfg.Server.Listen
			}
			if key == "" {
				key = os.Getenv("MDSA_ADMIN_KEY")
			}
			req, err := http.NewRequestWithContext(cmd.Context(), http.MethodPost,
				strings.TrimRight(serverURL, "/")+"/admin/plugins/reload", nil)
			if err != nil {
				return fmt.Errorf("plugins reload: %w", err)
			}
			req.Header.Set("Authorization", "Bearer "+key)
			resp, err := (&http.Client{Timeout: 5 * time.Minute}).Do(req)
			if err != nil {
				return fmt.Errorf("plugins reload: %w", err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
			if err != nil {
				return fmt.Errorf("plugins reload: reading the answer: %w", err)
			}
			if resp.StatusCode != http.StatusOK {
				var e struct {
					Error struct{ Message string } `json:"error"`
				}
				if json.Unmarshal(body, &e) == nil && e.Error.Message != "" {
					return fmt.Errorf("plugins reload: %s: %s", resp.Status, e.Error.Message)
				}
				return fmt.Errorf("plugins reload: %s", resp.Status)
			}
			var rep wire.ReloadReport
			if err := json.Unmarshal(body, &rep); err != nil {
				return fmt.Errorf("plugins reload: the server's answer is not a reload report: %w", err)
			}
			if js {
				if err := writeJSON(a.out, rep); err != nil {
					return err
				}
			} else {
				printReload(a.out, rep)
			}
			if len(rep.Refused) > 0 {
				return silentError{fmt.Errorf("%d plugin versions refused", len(rep.Refused))}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&serverURL, "server", "", "server URL (default: http:// + server.listen of the config)")
	f.StringVar(&key, "admin-key", "", "admin key (default: $MDSA_ADMIN_KEY)")
	f.BoolVar(&js, "json", false, "print JSON")
	return cmd
}

func printReload(w io.Writer, rep wire.ReloadReport) {
	if len(rep.Changes) == 0 && len(rep.Refused) == 0 {
		fmt.Fprintf(w, "no changes (%.1f ms)\n", rep.TookMS)
		return
	}
	for _, c := range rep.Changes {
		switch c.Action {
		case "swapped":
			fmt.Fprintf(w, "swapped  %-12s %s -> %s\n", c.Name, c.OldVersion, c.Version)
		case "added":
			fmt.Fprintf(w, "added    %-12s %s\n", c.Name, c.Version)
		default:
			fmt.Fprintf(w, "removed  %-12s %s\n", c.Name, c.OldVersion)
		}
	}
	for _, r := range rep.Refused {
		fmt.Fprintf(w, "REFUSED  %-12s %s: %s\n", r.Name, r.Path, r.Reason)
	}
	fmt.Fprintf(w, "took %.1f ms\n", rep.TookMS)
}
