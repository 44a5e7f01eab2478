package download

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// contentRange is a parsed Content-Range header: "bytes START-END/TOTAL",
// "bytes START-END/*" or "bytes */TOTAL". Unknown parts are -1.
type contentRange struct {
	start, end, total int64
}

// parseContentRange parses the Content-Range of a 206 or 416 response
// (RFC 9110 section 14.4). It accepts only the bytes unit and rejects
// ranges that are reversed or lie beyond the total.
func parseContentRange(s string) (contentRange, error) {
	bad := func(why string) (contentRange, error) {
		return contentRange{}, fmt.Errorf("bad Content-Range %q: %s", s, why)
	}
	unit, rest, ok := strings.Cut(strings.TrimSpace(s), " ")
	if !ok || !strings.EqualFold(unit, "bytes") {
		return bad("want \"bytes START-END/TOTAL\"")
	}
	rng, tot, ok := strings.Cut(strings.TrimLeft(rest, " "), "/")
	if !ok {
		return bad("no /TOTAL")
	}
	cr := contentRange{start: -1, end: -1, total: -1}
	if tot != "*" {
		n, err := parseBytePos(tot)
		if err != nil {
			return bad("total: " + err.Error())
		}
		cr.total = n
	}
	if rng == "*" {
		if cr.total < 0 {
			return bad("neither range nor total")
		}
		return cr, nil
	}
	a, b, ok := strings.Cut(rng, "-")
	if !ok {
		return bad("no START-END")
	}
	var err error
	if cr.start, err = parseBytePos(a); err != nil {
		return bad("start: " + err.Error())
	}
	if cr.end, err = parseBytePos(b); err != nil {
		return bad("end: " + err.Error())
	}
	if cr.end < cr.start {
		return bad("end before start")
	}
	if cr.total >= 0 && cr.end >= cr.total {
		return bad("range beyond total")
	}
	return cr, nil
}

// parseBytePos parses a non-negative decimal without sign or spaces.
func parseBytePos(s string) (int64, error) {
	if s == "" {
		return 0, errors.New("empty number")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("not a number: %q", s)
		}
	}
	return strconv.ParseInt(s, 10, 64)
}

// parseRetryAfter reads a Retry-After header: seconds or an HTTP date.
// It returns 0 when the header is absent, malformed or in the past.
func parseRetryAfter(s string, now time.Time) time.Duration {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0
	}
	if n, err := parseBytePos(s); err == nil {
		const maxSecs = int64(24 * time.Hour / time.Second)
		return time.Duration(min(n, maxSecs)) * time.Second
	}
	if t, err := http.ParseTime(s); err == nil && t.After(now) {
		return min(t.Sub(now), 24*time.Hour)
	}
	return 0
}

// strongETag returns etag when it may be used in If-Range (a strong,
// quoted entity tag), else "".
func strongETag(etag string) string {
	etag = strings.TrimSpace(etag)
	if len(etag) < 2 || etag[0] != '"' || etag[len(etag)-1] != '"' {
		return ""
	}
	return etag
}
