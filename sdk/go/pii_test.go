package sdk

import (
	"strings"
	"testing"
)

func TestRedact(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		n        PIICount
	}{
		{"Card 4111 1111 1111 1111 expires soon", "Card " + RedactedCard + " expires soon", PIICount{Cards: 1}},
		{"card 4111-1111-1111-1111, amex 378282246310005", "card " + RedactedCard + ", amex " + RedactedCard, PIICount{Cards: 2}},
		{"order 4111111111111112 (not Luhn-valid)", "order 4111111111111112 (not Luhn-valid)", PIICount{}},
		{"mail Jane.Doe+shop@mail.example.co.uk now", "mail " + RedactedEmail + " now", PIICount{Emails: 1}},
		{"call +1 (555) 010-2345 or 555-123-4567 or +44 20 7946 0958", "call " + RedactedPhone + " or " + RedactedPhone + " or " + RedactedPhone, PIICount{Phones: 3}},
		{"(555) 123-4567 and 020 7946 0958", RedactedPhone + " and " + RedactedPhone, PIICount{Phones: 2}},
		{"1-800-555-0199", RedactedPhone, PIICount{Phones: 1}},
		// Things that are not personal data stay.
		{"on 2024-01-15 at 10:30, order #123456789, ip 192.168.100.200, v1.2.3, $10,000.50, 3.14159",
			"on 2024-01-15 at 10:30, order #123456789, ip 192.168.100.200, v1.2.3, $10,000.50, 3.14159", PIICount{}},
		{"4111 1111 1111 1111 2025", RedactedCard + " 2025", PIICount{Cards: 1}},
		{"x4111111111111111", "x4111111111111111", PIICount{}},
		{"", "", PIICount{}},
	} {
		got, n := Redact(tc.in)
		if got != tc.want || n != tc.n {
			t.Errorf("Redact(%q) = %q, %+v; want %q, %+v", tc.in, got, n, tc.want, tc.n)
		}
	}
}

func TestLuhn(t *testing.T) {
	for s, want := range map[string]bool{
		"4111111111111111":     true,
		"4111 1111 1111 1111":  true,
		"5555555555554444":     true,
		"378282246310005":      true,
		"4111111111111112":     false,
		"411111111111":         false, // 12 digits
		"41111111111111111111": false, // 20 digits
	} {
		if luhn(s) != want {
			t.Errorf("luhn(%q) = %v", s, !want)
		}
	}
}

func TestRedactPIIValidator(t *testing.T) {
	codes, got := run(t, RedactPII(), "", "Your card 4111 1111 1111 1111 and a@b.io are on file.")
	if len(codes) != 1 || codes[0] != CodePIIRedacted || strings.Contains(got, "4111") || strings.Contains(got, "a@b.io") {
		t.Errorf("codes %q, response %q", codes, got)
	}
	if codes, _ := run(t, RedactPII(), "", "Nothing personal here, just 42 apples."); codes != nil {
		t.Errorf("clean text: %q", codes)
	}
}

// FuzzRedact checks that redaction never panics, keeps no email address and
// that its counts match the placeholders it wrote.
func FuzzRedact(f *testing.F) {
	f.Add("card 4111 1111 1111 1111 mail a@b.co phone +1 555 010 2345")
	f.Add("1234567890123 0000000000000")
	f.Add("+(((((((1")
	f.Fuzz(func(t *testing.T, s string) {
		if strings.Contains(s, "redacted]") {
			return
		}
		got, n := Redact(s)
		if emailRe.MatchString(got) {
			t.Fatalf("email left in %q", got)
		}
		if c := strings.Count(got, RedactedCard); c != n.Cards {
			t.Fatalf("%d card placeholders, count %d", c, n.Cards)
		}
		if c := strings.Count(got, RedactedEmail); c != n.Emails {
			t.Fatalf("%d email placeholders, count %d", c, n.Emails)
		}
		if c := strings.Count(got, RedactedPhone); c != n.Phones {
			t.Fatalf("%d phone placeholders, count %d", c, n.Phones)
		}
	})
}
