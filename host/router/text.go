package router

import "strings"

// stop words carry no domain evidence.
var stopWords = func() map[string]bool {
	m := map[string]bool{}
	for _, w := range strings.Fields(`a an the and or but if of to in on at by for with from about as into
		is are was were be been being am do does did doing have has had having i me my mine we our you your
		he she it its they them their this that these those what which who whom how why when where can could
		would should will shall may might must not no so than too very just there here any some all also
		please tell want need get got im ive id`) {
		m[w] = true
	}
	return m
}()

// stem strips common English suffixes so "charges", "charged" and
// "charging" meet at "charg".
func stem(w string) string {
	w = stripSuffix(w)
	if len(w) > 3 && strings.HasSuffix(w, "e") {
		w = w[:len(w)-1]
	}
	return w
}

func stripSuffix(w string) string {
	for _, suf := range []string{"ations", "ation", "ings", "ing", "ies", "ied", "es", "ed", "ly", "s"} {
		if len(w) > len(suf)+2 && strings.HasSuffix(w, suf) {
			switch suf {
			case "ies", "ied":
				return w[:len(w)-3] + "y"
			case "s":
				if strings.HasSuffix(w, "ss") {
					return w
				}
			}
			return w[:len(w)-len(suf)]
		}
	}
	return w
}
