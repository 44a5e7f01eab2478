package routerbench

import (
	"fmt"
	"math/rand/v2"
	"strings"

	"github.com/mdsa-go/mdsa/host/router"
)

// Synthetic makes a dataset of n domains with perDomain examples each, for
// measuring cost at scale. Every domain has its own vocabulary of made-up
// words; utterances mix a few of them with common English words, the way
// real queries mix a topic with filler. Test and Val hold fresh utterances
// (5 per domain, capped at 5,000) and as many again made of words no domain
// has, which are out of scope. The same seed gives the same dataset.
func Synthetic(n, perDomain int, seed uint64) Dataset {
	rng := rand.New(rand.NewPCG(seed, 0x73796e74))
	syll := []string{"ka", "lo", "mi", "ne", "ru", "ta", "vo", "zi", "pe", "sa", "do", "fu", "gi", "ha", "ju", "be", "co", "wy", "xe", "qu"}
	word := func() string {
		var b strings.Builder
		for range 2 + rng.IntN(3) {
			b.WriteString(syll[rng.IntN(len(syll))])
		}
		return b.String()
	}
	filler := strings.Fields("how do i what is the my can you please help with about for a to in on why when should " +
		"need want tell me where does it get make find best way there any")
	vocab := make([][]string, n)
	for d := range vocab {
		for range 12 {
			vocab[d] = append(vocab[d], word())
		}
	}
	utter := func(topic []string) string {
		var parts []string
		for range 2 + rng.IntN(4) {
			parts = append(parts, filler[rng.IntN(len(filler))])
		}
		for range 2 + rng.IntN(2) {
			parts = append(parts, topic[rng.IntN(len(topic))])
		}
		rng.Shuffle(len(parts), func(i, j int) { parts[i], parts[j] = parts[j], parts[i] })
		return strings.Join(parts, " ")
	}
	ds := Dataset{Name: fmt.Sprintf("synthetic-%dx%d", n, perDomain)}
	for d := range n {
		dom := router.Domain{Name: fmt.Sprintf("domain-%04d", d)}
		for range perDomain {
			dom.Examples = append(dom.Examples, utter(vocab[d]))
		}
		ds.Domains = append(ds.Domains, dom)
	}
	samples := func() []router.Sample {
		var out []router.Sample
		per := max(1, min(5, 5000/n))
		for d := range n {
			for range per {
				out = append(out, router.Sample{Query: utter(vocab[d]), Domain: ds.Domains[d].Name})
			}
		}
		for range len(out) {
			out = append(out, router.Sample{Query: utter([]string{word() + "x", word() + "y", word() + "z"})})
		}
		return out
	}
	ds.Val, ds.Test = samples(), samples()
	return ds
}
