package enginebench

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
)

// WriteText writes rep for people: a header, then one table per phase with
// the columns mdsa | reference | ratio (mdsa / reference) | better, then
// the first error of each target and phase, and the warnings.
func WriteText(w io.Writer, rep Report) error {
	var b strings.Builder
	s := rep.Setup
	if s.ModelFile != "" {
		fmt.Fprintf(&b, "model %s", s.ModelFile)
		if s.Model != "" {
			fmt.Fprintf(&b, " (%s)", s.Model)
		}
		fmt.Fprintf(&b, "\nmdsa engine in process: %d threads, context %d, parallel %d, gpu layers %d; %d cores\n",
			s.Threads, s.ContextSize, s.Parallel, s.GPULayers, s.Cores)
	}
	for _, t := range rep.Targets {
		if t.Role != "reference" {
			continue
		}
		fmt.Fprintf(&b, "reference %s", t.URL)
		if t.PID != 0 {
			fmt.Fprintf(&b, " (pid %d, %s)", t.PID, t.Command)
		}
		b.WriteString("\n")
	}
	for _, t := range rep.Targets {
		if t.CPUNote != "" {
			fmt.Fprintf(&b, "CPU time of the %s: n/a: %s\n", t.Role, t.CPUNote)
		}
	}
	st := rep.Settings
	hasRef := len(rep.Targets) > 1
	if st.Unique {
		fmt.Fprintf(&b, "same chats for both: %d-byte finance system prompt + a question never asked before (\"Request N.\" + 1 of %d in turn); greedy; targets alternate\n",
			st.SystemPromptBytes, st.Questions)
	} else {
		fmt.Fprintf(&b, "same chat for both: %d-byte finance system prompt + 1 of %d questions in turn; greedy; targets alternate\n",
			st.SystemPromptBytes, st.Questions)
	}

	l := rep.Latency
	table(&b, fmt.Sprintf("single request: %d sequential requests per target after %d warm-up, max_tokens %d",
		l.Requests, st.WarmupRequests, l.MaxTokens), l.Compare, hasRef)

	if len(rep.Throughput) > 0 {
		var rows []Compare
		for _, lvl := range rep.Throughput {
			for _, c := range lvl.Compare {
				c.Figure = fmt.Sprintf("%2d clients  %s", lvl.Clients, c.Figure)
				rows = append(rows, c)
			}
		}
		table(&b, fmt.Sprintf("throughput: closed-loop clients, %.3g s per target and level in %d rounds after %.3g s warm-up, max_tokens %d",
			st.DurationS, st.Rounds, st.WarmupS, st.MaxTokens), rows, hasRef)
	}
	if d := rep.Decode; d != nil {
		table(&b, fmt.Sprintf("decode: 1 stream, max_tokens %d, %d answers per target; tokens after the first / time after the first",
			d.MaxTokens, st.DecodeAnswers), d.Compare, hasRef)
	}
	if a := rep.Aggregate; a != nil {
		table(&b, fmt.Sprintf("aggregate: all completion tokens / wall time, 1 and %d concurrent streams, max_tokens %d, %d rounds",
			a.Streams, a.MaxTokens, st.Rounds), a.Compare, hasRef)
	}
	if p := rep.Problems(); len(p) > 0 {
		b.WriteString("\n")
		for _, line := range p {
			fmt.Fprintf(&b, "%s\n", line)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// table writes one phase's comparison.
func table(b *strings.Builder, title string, rows []Compare, hasRef bool) {
	width := len("figure")
	for _, r := range rows {
		width = max(width, len(r.Figure))
	}
	fmt.Fprintf(b, "\n%s\n", title)
	fmt.Fprintf(b, "  %-*s %12s %12s %9s  %s\n", width, "", "mdsa", "reference", "ratio", "better")
	for _, r := range rows {
		better := r.Better
		if better == "" {
			better = "-"
		}
		ratio := "-"
		if r.Ratio != nil {
			ratio = fmt.Sprintf("%.2fx", *r.Ratio)
		}
		ref := "-"
		if hasRef {
			ref = num(r.Reference)
		}
		if len(r.RoundRatios) > 1 {
			better = fmt.Sprintf("%-6s  rounds %.2f-%.2fx", better, slices.Min(r.RoundRatios), slices.Max(r.RoundRatios))
		}
		fmt.Fprintf(b, "  %-*s %12s %12s %9s  %s\n", width, r.Figure, num(r.MDSA), ref, ratio, better)
	}
}

// Problems lists, for people, the errors of each phase (how many and the
// first) and the warnings.
func (rep Report) Problems() []string {
	var out []string
	add := func(phase, role string, c Counts) {
		if c.Errors > 0 {
			out = append(out, fmt.Sprintf("%s: %s: %d of %d requests failed; the first: %s",
				phase, role, c.Errors, c.Errors+c.Requests, c.FirstError))
		}
	}
	both := func(phase string, mdsa Counts, ref *Counts) {
		add(phase, "mdsa", mdsa)
		if ref != nil {
			add(phase, "reference", *ref)
		}
	}
	l := rep.Latency
	both("single request", l.MDSA.Counts, refCounts(l.Reference, func(x *LatencyStats) Counts { return x.Counts }))
	for _, lvl := range rep.Throughput {
		both(fmt.Sprintf("throughput, %d clients", lvl.Clients), lvl.MDSA.Counts,
			refCounts(lvl.Reference, func(x *ThroughputStats) Counts { return x.Counts }))
	}
	if d := rep.Decode; d != nil {
		both("decode", d.MDSA.Counts, refCounts(d.Reference, func(x *DecodeStats) Counts { return x.Counts }))
	}
	if a := rep.Aggregate; a != nil {
		both("aggregate, 1 stream", a.MDSA.One.Counts, refCounts(a.Reference, func(x *AggregateStats) Counts { return x.One.Counts }))
		both(fmt.Sprintf("aggregate, %d streams", a.Streams), a.MDSA.Many.Counts,
			refCounts(a.Reference, func(x *AggregateStats) Counts { return x.Many.Counts }))
	}
	for _, w := range rep.Warnings {
		out = append(out, "warning: "+w)
	}
	return out
}

func refCounts[S any](ref *S, get func(*S) Counts) *Counts {
	if ref == nil {
		return nil
	}
	c := get(ref)
	return &c
}

// num formats a figure with about four significant digits, "n/a" for nil.
func num(v *float64) string {
	if v == nil {
		return "n/a"
	}
	x := *v
	switch a := math.Abs(x); {
	case a >= 1000:
		return fmt.Sprintf("%.0f", x)
	case a >= 100:
		return fmt.Sprintf("%.1f", x)
	case a >= 1 || a == 0:
		return fmt.Sprintf("%.2f", x)
	default:
		return fmt.Sprintf("%.4f", x)
	}
}
