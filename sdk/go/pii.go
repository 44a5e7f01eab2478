package sdk

import (
	"regexp"
	"strings"

	"github.com/mdsa-go/mdsa/sdk/go/abi"
)

// Replacement texts used by Redact.
const (
	RedactedCard  = "[card number redacted]"
	RedactedEmail = "[email redacted]"
	RedactedPhone = "[phone number redacted]"
)

// PIICount says how many items of each kind Redact replaced.
type PIICount struct {
	Cards, Emails, Phones int
}

// Total is the number of items replaced.
func (c PIICount) Total() int { return c.Cards + c.Emails + c.Phones }

var (
	emailRe = regexp.MustCompile(`[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}`)
	// 13 to 19 digits, optionally grouped by single spaces or dashes; the
	// Luhn check decides.
	cardRe = regexp.MustCompile(`\b\d(?:[ -]?\d){12,18}\b`)
	// Phone shapes: international (+CC ...), North American
	// ((555) 123-4567, 555-123-4567, 1-800-555-0199) and national numbers
	// with a trunk 0 (020 7946 0958). The digit count is checked afterwards.
	// Plain digit runs without separators are left alone: they are more
	// often order or ticket numbers than phone numbers.
	phoneRe = regexp.MustCompile(`\+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,5}(?:[ .-]?\d{2,5}){1,4}\b` +
		`|(?:1[ .-]?)?(?:\(\d{3}\) ?|\d{3}[ .-])\d{3}[ .-]\d{4}\b` +
		`|0\d{2,4}[ -]\d{3,4}[ -]?\d{3,4}\b`)
)

// Redact replaces email addresses, payment card numbers (13-19 digits that
// pass the Luhn check, spaces or dashes allowed) and phone numbers in text
// with RedactedEmail, RedactedCard and RedactedPhone, and counts them.
// Phone detection is a heuristic for common written formats.
func Redact(text string) (string, PIICount) {
	var n PIICount
	if !strings.ContainsAny(text, "0123456789@") {
		return text, n
	}
	if strings.IndexByte(text, '@') >= 0 {
		text = emailRe.ReplaceAllStringFunc(text, func(string) string {
			n.Emails++
			return RedactedEmail
		})
	}
	text = replaceBounded(text, cardRe, func(m string) (string, bool) {
		if !luhn(m) {
			return "", false
		}
		n.Cards++
		return RedactedCard, true
	})
	text = replaceBounded(text, phoneRe, func(m string) (string, bool) {
		d := countDigits(m)
		if d < 7 || d > 15 {
			return "", false
		}
		n.Phones++
		return RedactedPhone, true
	})
	return text, n
}

// replaceBounded replaces the matches of re that stand alone (no letter or
// digit right before or after) and that repl accepts.
func replaceBounded(s string, re *regexp.Regexp, repl func(string) (string, bool)) string {
	locs := re.FindAllStringIndex(s, -1)
	if locs == nil {
		return s
	}
	var b strings.Builder
	last := 0
	for _, l := range locs {
		if l[0] > 0 && isWordByte(s[l[0]-1]) || l[1] < len(s) && isWordByte(s[l[1]]) {
			continue
		}
		r, ok := repl(s[l[0]:l[1]])
		if !ok {
			continue
		}
		b.WriteString(s[last:l[0]])
		b.WriteString(r)
		last = l[1]
	}
	if last == 0 {
		return s
	}
	b.WriteString(s[last:])
	return b.String()
}

func isWordByte(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_'
}

func countDigits(s string) int {
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] >= '0' && s[i] <= '9' {
			n++
		}
	}
	return n
}

// luhn reports whether the digits of s (other characters ignored) form a
// 13-19 digit number with a valid Luhn check digit.
func luhn(s string) bool {
	sum, n := 0, 0
	for i := len(s) - 1; i >= 0; i-- {
		c := s[i]
		if c < '0' || c > '9' {
			continue
		}
		d := int(c - '0')
		if n%2 == 1 {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
		n++
	}
	return n >= 13 && n <= 19 && sum%10 == 0
}

// RedactPII removes card numbers, email addresses and phone numbers from the
// response (see Redact) and reports a warning saying what it removed. The
// revised response is returned by the validate export.
func RedactPII() Validator {
	return Validator{Name: "redact_pii", Check: func(c *Check) []abi.Issue {
		// Cheap test first: every kind needs an '@' or 7+ digits in a row
		// (separators allowed).
		if a := c.responseAnalysis(); !a.hasAt && a.digitRun < 7 {
			return nil
		}
		red, n := Redact(c.Response)
		if n.Total() == 0 {
			return nil
		}
		c.Response = red
		var parts []string
		for _, p := range []struct {
			n    int
			what string
		}{{n.Cards, "card number"}, {n.Emails, "email address"}, {n.Phones, "phone number"}} {
			switch {
			case p.n == 1:
				parts = append(parts, "1 "+p.what)
			case p.n > 1:
				parts = append(parts, itoa(p.n)+" "+plural(p.what))
			}
		}
		return c.issue(CodePIIRedacted, abi.SeverityWarning, "redacted "+strings.Join(parts, ", "))
	}}
}

func plural(s string) string {
	if strings.HasSuffix(s, "s") {
		return s + "es"
	}
	return s + "s"
}
