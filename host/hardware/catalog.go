package hardware

import (
	"regexp"
	"strconv"
	"strings"
)

var (
	reParams    = regexp.MustCompile(`(?i)(?:^|[^a-z0-9.])([0-9]+(?:\.[0-9]+)?)([bm])(?:$|[^a-z0-9])`)
	reMoEParams = regexp.MustCompile(`(?i)(?:^|[^a-z0-9.])([0-9]+)x([0-9]+(?:\.[0-9]+)?)b(?:$|[^a-z0-9])`)
)

// ParamsFromName reads a parameter count from a model name that follows
// the usual convention ("qwen2.5-0.5b-instruct" is 0.5e9, "smollm-135m" is
// 135e6, "mixtral-8x7b" is taken as 56e9, an upper bound). It returns 0
// when the name has no such part.
func ParamsFromName(name string) int64 {
	if m := reMoEParams.FindStringSubmatch(name); m != nil {
		n, err1 := strconv.ParseFloat(m[1], 64)
		b, err2 := strconv.ParseFloat(m[2], 64)
		if err1 == nil && err2 == nil && n*b > 0 && n*b < 1e5 {
			return int64(n * b * 1e9)
		}
	}
	m := reParams.FindStringSubmatch(name)
	if m == nil {
		return 0
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil || v <= 0 || v >= 1e5 {
		return 0
	}
	if strings.EqualFold(m[2], "m") {
		return int64(v * 1e6)
	}
	return int64(v * 1e9)
}
