package host

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"unicode"

	"github.com/mdsa-go/mdsa/host/router"
)

// The queries below are held out: they were written for this test and must
// never be copied, or lightly edited, into the plugins' examples, which are
// the router's training data. Improve the plugins in general ways instead.

// heldOutDomainQueries are realistic user queries for each shipped domain,
// varied in style: typos, lower case, long and short, indirect phrasings,
// some with no obvious keyword.
var heldOutDomainQueries = map[string][]string{
	"finance": {
		"should i put my bonus into my roth or pay down my car loan",
		"What's a reasonable amount to keep in a rainy day fund?",
		"how do i get out of credit card debt fast",
		"Is now a bad time to buy a house with rates this high?",
		"my wife and I want to start saving for our kids college, what accounts should we look at",
		"What does a financial planner charge and is it worth paying one?",
		"Explain what a stock split means for shareholders",
		"whats the diffrence between a credit union and a normal bank",
		"How do I read my brokerage statement?",
		"I'm 25 with nothing put aside, where do I even begin?",
		"How much should I spend on rent if I take home 4000 a month?",
		"Is crypto a sensible part of a long-term portfolio?",
		"What happens if I withdraw early from my 401(k)?",
		"Can I deduct my home office as a freelancer?",
		"how does a balance transfer card work",
		"whats the point of buying the whole market instead of picking shares myself",
		"Do I need life insurance if I'm single with no kids?",
		"How do treasury bills work and where can I buy them?",
		"my parents want to lend me money for a down payment, how should we set that up",
		"Should I lease or finance my next car?",
		"why do people say you shouldnt try to time the market",
		"what percentage of my income should i be saving to retire early",
		"How is interest worked out on a personal loan?",
		"Is it worth paying points to lower my mortgage rate?",
		"I just got a 20k windfall, what's the smartest thing to do with it?",
		"are my stock options taxed when they vest or when i sell",
	},
	"medical": {
		"my knee swells up after running, what could it be",
		"how many hours of sleep does a teenager need",
		"Is it dangerous to take melatonin every night?",
		"What are the symptoms of strep throat?",
		"I keep waking up with a stiff neck, any ideas?",
		"Can I give my 2 year old childrens tylenol for teething?",
		"what does it mean if my pee is dark yellow",
		"How do I know if a mole could be cancerous?",
		"my period is two weeks late but the test is negative",
		"Is it normal for a newborn to sneeze a lot?",
		"what helps with heartburn at night",
		"Do I need a tetanus shot after stepping on a rusty nail?",
		"I've lost 10 pounds without trying, should I be worried?",
		"how long should a cold last before i get it checked",
		"What's the best way to treat a minor burn at home?",
		"My ears have been ringing since the concert yesterday",
		"Can anxiety make your chest feel tight?",
		"is it ok to work out with a chest cold",
		"What are the common side effects of statins?",
		"how do i bring my a1c down without more meds",
		"My eyes are red and crusty in the morning, is it pink eye?",
		"What should my blood sugar be two hours after eating?",
		"Is it safe to drink alcohol while on antidepressants?",
		"lower back pain that shoots down my left leg",
		"How can I tell if I'm dehydrated?",
		"whats the recovery time after getting wisdom teeth out",
	},
	"support": {
		"hi, my parcel still hasnt arrived and it's been 10 days",
		"I'd like to send back the jacket I bought last week",
		"you took the money from my card but the order never went through",
		"How do I change the email address on my profile?",
		"can i get my money back if i cancel within 30 days",
		"The item I got isn't what I ordered",
		"I never received the confirmation email for my purchase",
		"Why hasn't my refund come through yet?",
		"my discount wasnt applied to my last purchase",
		"can someone from your team call me back about my complaint",
		"How do I downgrade my plan to the basic tier?",
		"The headphones you sold me stopped working after two weeks, can I get a replacement?",
		"Do you offer free returns?",
		"I can't sign in even though I'm typing the right password",
		"how do i turn off auto renewal",
		"the courier left my box in the rain and everything inside is soaked",
		"Can I add something to an order that hasn't shipped yet?",
		"Where can I download my receipts from last year?",
		"Is express delivery available in my area?",
		"i got billed again after i cancelled my membership",
		"How do I redeem a gift card on your website?",
		"Your size guide was wrong and now the boots don't fit",
		"Can I pause my subscription for a couple of months?",
		"who do i talk to about a late delivery",
		"My order status has said processing for a whole week",
		"Please close my account, I don't use it anymore",
	},
	"technical": {
		"how do i reverse a string in javascript",
		"pip install fails with externally-managed-environment",
		"What's the difference between a process and a thread?",
		"my website takes ages to load, how do i find out why",
		"NullPointerException when calling a method on a list in java",
		"how to center a div with css",
		"What's a good way to structure a REST API for a blog?",
		"npm install hangs forever on my mac",
		"docker compose can't connect to the postgres container",
		"How do I write a cron job that runs every 5 minutes?",
		"Explain big O notation with an example",
		"my go program deadlocks when I close the channel",
		"How do I merge two dictionaries in python 3?",
		"what's the right way to store user passwords in a database",
		"TypeError: cannot read properties of undefined (reading 'map')",
		"How do I rebase my feature branch onto main?",
		"vim: how do I search and replace across the whole file",
		"Why does my browser say the SSL certificate on my site is not trusted?",
		"how to read a huge csv without running out of memory in pandas",
		"What are websockets and when should I use them instead of polling?",
		"my unit tests pass locally but fail in CI",
		"how do i set up a virtualenv",
		"kubectl get pods shows CrashLoopBackOff",
		"What is dependency injection and why is it useful?",
		"windows update keeps failing with 0x80070002",
		"How can I speed up a loop over a million rows?",
	},
}

// heldOutOutOfScope are queries that belong to no shipped domain.
var heldOutOutOfScope = []string{
	"Give me a recipe for chicken tikka masala",
	"How long should I boil an egg for a runny yolk?",
	"what can i make with leftover rice and eggs",
	"how do I make a sourdough starter from scratch",
	"Who won the World Cup in 2014?",
	"What is the capital of Australia?",
	"Who painted the Mona Lisa?",
	"What year did the Berlin Wall fall?",
	"Which planet has the most moons?",
	"How many legs does a spider have?",
	"Who wrote Pride and Prejudice?",
	"what's the tallest mountain in africa",
	"Why is the sky blue?",
	"Write a haiku about the ocean",
	"write me a short poem about my cat",
	"Write a short story about a dragon who loves tea",
	"what rhymes with orange",
	"Tell me a joke about penguins",
	"got any good knock knock jokes",
	"Who is the best basketball player of all time?",
	"when does the premier league season start",
	"how many players are on a rugby team",
	"how can I get better at chess openings",
	"What's the weather going to be like in Paris tomorrow?",
	"will it rain this weekend",
	"What are the must-see sights in Rome?",
	"best things to do in Tokyo for three days",
	"Plan a two day hiking trip in the Lake District",
	"Recommend some albums similar to Radiohead's OK Computer",
	"who sang bohemian rhapsody",
	"can you recommend a podcast about ancient history",
	"What's a good movie to watch tonight?",
	"Is the Lord of the Rings trilogy worth watching?",
	"recommend a good fantasy book series",
	"what's the plot of hamlet",
	"Solve 3x + 7 = 22",
	"what is the derivative of x squared times sin x",
	"What's 15% of 80?",
	"How do you say good morning in Japanese?",
	"translate 'where is the train station' into spanish",
	"hi how are you today",
	"What's your favourite colour?",
	"good morning!",
	"Thanks, that's all for now",
	"When should I plant tomato seedlings outside?",
	"why are the leaves on my fiddle leaf fig turning brown",
	"is it better to water succulents in the morning or evening",
	"How often should I feed a goldfish?",
	"my dog keeps barking at night, how do I stop it",
	"What's the best way to teach a puppy to sit?",
	"how do I get my cat to stop scratching the sofa",
	"Suggest a name for my new kitten",
	"What should I get my mom for her birthday?",
	"give me ideas for a 10 year old's birthday party",
	"how do I get red wine out of a carpet",
	"How do I tie a tie?",
	"help me write a wedding toast for my brother",
	"what are some fun board games for four people",
	"what should i name my band",
	"How far is the moon from the earth?",
}

// nearMisses share a word with a domain. want is "" where a careful human
// would call the query out of scope, else the domain it belongs to.
var nearMisses = []struct{ query, want string }{
	{"what's the interest of this novel's plot", ""},
	{"write a poem about a doctor", ""},
	{"how wide is the bank of a river usually", ""},
	{"what's the order of the planets from the sun", ""},
	{"how do I return a serve in tennis", ""},
	{"is a ball python a good snake for a first-time reptile owner", ""},
	{"What time does the public library open on Sundays?", ""},
	{"Who played the doctor in Doctor Who in 2010?", ""},
	{"tell me a joke about programmers", ""},
	{"write a limerick about the stock market", ""},
	{"what's the best pizza delivery place near the station", ""},
	{"how do I cook a perfect steak without setting off the fire alarm", ""},
	{"how do I sort orders by date in a SQL query", "technical"},
	{"is it normal for my heart to race after too much coffee", "medical"},
}

// ambiguous queries could fairly go to either of two domains (or none);
// they are routed and logged, never asserted.
var ambiguous = []string{
	"write a python function that works out compound interest", // technical or finance
	"how much does a doctor's visit cost without insurance",    // finance, medical or support
	"my banking app crashes every time I open it",              // technical or support
}

// heldOutBanking are everyday banking customer queries (cards, top-ups,
// transfers, PINs, cash machines, exchange rates, identity checks, fees,
// statements), written for this test. They belong to finance, which covers
// banking as well as personal finance; support keeps a shop's orders,
// shipping, returns and accounts of other services. Like the queries
// above, they must never find their way into the plugins' examples.
var heldOutBanking = []string{
	// cards: arriving, lost, declined, not working
	"still waiting on my new debit card, it's been two weeks",
	"When will the replacement card you posted actually get here?",
	"how do i track the card you sent me",
	"I left my card in a taxi last night, can you freeze it?",
	"someone pinched my wallet with my bank card in it",
	"my card got rejected at the supermarket even though I have money in the account",
	"Why won't my card work at petrol stations abroad?",
	"tap to pay isn't working on my card anymore",
	"my card is bent and doesn't work in card readers anymore",
	"my card expires next month, will a new one be sent automatically?",
	"Can I get a physical card as well as the virtual one?",
	"my virtual card isn't working for online purchases",
	"how do I get a disposable card number for one-off online payments",
	"Can I add my card to Apple Pay?",
	"what's my daily spending limit on this card",
	"contactless limit, how much can i pay without a pin",
	// PINs
	"I typed my PIN wrong three times and now it's locked",
	"how can I unlock my pin",
	"where do i change the pin on my debit card",
	"someone knows my PIN, what should I do",
	// cash machines
	"The cash machine kept my card, what now?",
	"i took 100 out at an atm but only got 60",
	"ATM said transaction failed but the money left my account anyway",
	"Why was I charged for taking cash out of a machine?",
	"how much can i withdraw from a cash machine per day",
	"Can I get cash back at the till with my debit card?",
	// top-ups
	"My top up didn't go through",
	"I added money to my account by card but the balance hasn't changed",
	"topped up with my credit card and got charged a fee, why?",
	"can I load cash onto my account at a shop?",
	"how do i set up auto top up when my balance is low",
	"is there a maximum amount I can top up",
	// transfers and payees
	"The transfer I sent to my landlord is still pending after three days",
	"my bank transfer was declined and I don't know why",
	"the person I paid says they never got the money",
	"can i cancel a payment i just sent to the wrong account",
	"I sent money to the wrong IBAN by mistake",
	"how long do international transfers take to arrive?",
	"why can't I add a new payee to my account",
	"a transfer from my mum hasn't reached my account yet",
	"is it free to receive money from a friend overseas",
	"i'm expecting my salary in this account, how do I give my employer the details",
	"Where do I find my sort code and account number?",
	"I got a cheque, can I pay it into my account?",
	// exchange rates and currencies
	"what exchange rate do you use when I pay in euros?",
	"I was charged more than the exchange rate I saw in the app",
	"is there a fee for spending in dollars on my card",
	"How do I convert pounds to euros in my account?",
	"which currencies can I hold in my account",
	"what's the markup on currency conversion at weekends",
	"The exchange rate changed between when I paid and when the payment settled",
	"my card was charged in a foreign currency for an online order, why the extra fee?",
	// identity verification
	"why do I have to send a selfie to verify my identity",
	"my ID verification keeps failing, the photo of my passport is rejected",
	"what documents do you accept to prove my address",
	"how long does it take to verify my identity after I upload my driving licence",
	// fees
	"There's a monthly fee on my current account I didn't expect",
	"why was i charged a fee for receiving money",
	"How much does it cost to send money abroad with you?",
	// card payments, refunds, disputes
	"A shop refunded me a week ago but it's not showing on my card",
	"a card payment shows as pending for ages, will it go through?",
	"i see a payment on my card that i didn't make",
	"I want to dispute a transaction on my debit card",
	// direct debits and standing orders
	"a direct debit came out twice this month",
	"How do I cancel a direct debit to my old gym?",
	"how can i set up a standing order for my rent",
	// statements and the account itself
	"I need a bank statement for the last three months for my visa application",
	"where can i download my account statements as PDF",
	"I'm moving abroad, can I still keep my account?",
	"How old do you have to be to open an account with you?",
	"how do i close my bank account and move my money out",
	"I changed my address, how do I update it with the bank?",
	"got a text saying my bank account is frozen, is it real?",
}

// TestShippedPluginsRouteRealisticQueries checks that the keywords and
// examples of the shipped plugins route held-out queries to the right
// domain and that queries of no domain are refused.
func TestShippedPluginsRouteRealisticQueries(t *testing.T) {
	h := newHost(t, WithEngine(&fakeEngine{text: "x"}))
	ctx := context.Background()
	describe := func(d router.Decision) string {
		s := fmt.Sprintf("domain=%q confidence=%.3f out_of_scope=%v", d.Domain, d.Confidence, d.OutOfScope)
		for _, a := range d.Alternatives {
			s += fmt.Sprintf(" %s:%.3f", a.Domain, a.Score)
		}
		return s
	}

	// The held-out queries must stay out of the training data.
	all := slices.Concat(heldOutOutOfScope, ambiguous, heldOutBanking)
	for _, qs := range heldOutDomainQueries {
		all = append(all, qs...)
	}
	for _, nm := range nearMisses {
		all = append(all, nm.query)
	}
	checkHeldOut(t, h, all, false)

	type tally struct{ right, total, wrongDomain int }
	domains := map[string]*tally{}
	route := func(query, want string) {
		dec := h.Route(ctx, query)
		tl := domains[want]
		if tl == nil {
			tl = &tally{}
			domains[want] = tl
		}
		tl.total++
		switch {
		case want == "" && dec.OutOfScope:
			tl.right++
		case want != "" && !dec.OutOfScope && dec.Domain == want:
			tl.right++
		default:
			if want != "" && !dec.OutOfScope {
				tl.wrongDomain++
			}
			label := want
			if label == "" {
				label = "out of scope"
			}
			t.Logf("miss (want %s): %q -> %s", label, query, describe(dec))
		}
	}
	for _, name := range shipped {
		qs := heldOutDomainQueries[name]
		if len(qs) < 20 {
			t.Fatalf("%s: only %d held-out queries", name, len(qs))
		}
		for _, q := range qs {
			route(q, name)
		}
	}
	for _, q := range heldOutOutOfScope {
		route(q, "")
	}
	nearOut, nearOutRight := 0, 0
	for _, nm := range nearMisses {
		before := domains[""].right
		route(nm.query, nm.want)
		if nm.want == "" {
			nearOut++
			nearOutRight += domains[""].right - before
		}
	}

	for _, q := range ambiguous {
		t.Logf("ambiguous (not asserted): %q -> %s", q, describe(h.Route(ctx, q)))
	}

	// The floors sit a little under what was measured when the test was
	// written (85-100% per domain, 89% overall, 89% refused): a miss that
	// is refused rather than sent to the wrong domain is the safe failure,
	// so misroutes to another domain get the tightest bound.
	rate := func(tl *tally) float64 { return float64(tl.right) / float64(tl.total) }
	var in tally
	for _, name := range shipped {
		tl := domains[name]
		in.right, in.total = in.right+tl.right, in.total+tl.total
		t.Logf("%-9s routed to itself: %d/%d (%.0f%%), to another domain: %d", name, tl.right, tl.total, 100*rate(tl), tl.wrongDomain)
		if rate(tl) < 0.80 {
			t.Errorf("%s: %.0f%% of its queries routed to it, want >= 80%%", name, 100*rate(tl))
		}
		if tl.wrongDomain > 1 {
			t.Errorf("%s: %d of its queries routed to another domain, want <= 1", name, tl.wrongDomain)
		}
	}
	t.Logf("in-domain queries routed to their domain: %d/%d (%.0f%%)", in.right, in.total, 100*rate(&in))
	if rate(&in) < 0.85 {
		t.Errorf("%.0f%% of the in-domain queries routed to their domain, want >= 85%%", 100*rate(&in))
	}
	oos := domains[""]
	t.Logf("out of scope refused: %d/%d (%.0f%%), near misses among them: %d/%d", oos.right, oos.total, 100*rate(oos), nearOutRight, nearOut)
	if rate(oos) < 0.85 {
		t.Errorf("%.0f%% of the out-of-scope queries refused, want >= 85%%", 100*rate(oos))
	}
}

// queryWords are the lower-cased words of s.
func queryWords(s string) []string {
	return strings.FieldsFunc(strings.ToLower(s), func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r)
	})
}

// checkHeldOut fails the test for every held-out query that is one of the
// loaded plugins' examples (the same words but for punctuation and case).
// A light edit of an example (nearly the same set of words) fails it too
// when strict, and is logged otherwise: some of the older held-out queries
// are that close to an example.
func checkHeldOut(t *testing.T, h *Host, queries []string, strict bool) {
	t.Helper()
	type ex struct {
		plugin, text string
		words        map[string]bool
	}
	set := func(ws []string) map[string]bool {
		m := make(map[string]bool, len(ws))
		for _, w := range ws {
			m[w] = true
		}
		return m
	}
	trained := map[string]string{}
	var exs []ex
	for _, p := range h.Plugins() {
		for _, e := range p.Examples {
			ws := queryWords(e)
			trained[strings.Join(ws, " ")] = p.Name
			exs = append(exs, ex{p.Name, e, set(ws)})
		}
	}
	for _, q := range queries {
		ws := queryWords(q)
		if d, ok := trained[strings.Join(ws, " ")]; ok {
			t.Errorf("held-out query %q is one of the %s plugin's examples", q, d)
			continue
		}
		qs := set(ws)
		for _, e := range exs {
			common := 0
			for w := range qs {
				if e.words[w] {
					common++
				}
			}
			// Jaccard similarity of the two sets of words.
			if union := len(qs) + len(e.words) - common; union > 0 && float64(common)/float64(union) >= 0.75 {
				report := t.Logf
				if strict {
					report = t.Errorf
				}
				report("held-out query %q is a light edit of the %s plugin's example %q", q, e.plugin, e.text)
			}
		}
	}
}

// TestShippedPluginsRouteBankingQueries checks that everyday banking
// customer queries, held out of the plugins' examples, route to finance
// (banking is part of its scope) and never to medical.
func TestShippedPluginsRouteBankingQueries(t *testing.T) {
	h := newHost(t, WithEngine(&fakeEngine{text: "x"}))
	ctx := context.Background()
	if len(heldOutBanking) < 60 {
		t.Fatalf("only %d held-out banking queries", len(heldOutBanking))
	}
	checkHeldOut(t, h, heldOutBanking, true)

	to := map[string]int{}
	for _, q := range heldOutBanking {
		d := h.Route(ctx, q)
		dom := d.Domain
		if d.OutOfScope {
			dom = "out of scope"
		}
		to[dom]++
		if dom != "finance" {
			alts := ""
			for _, a := range d.Alternatives {
				alts += fmt.Sprintf(" %s:%.3f", a.Domain, a.Score)
			}
			t.Logf("miss: %q -> %s (confidence %.3f,%s)", q, dom, d.Confidence, alts)
		}
	}
	n := len(heldOutBanking)
	pct := func(k int) float64 { return 100 * float64(k) / float64(n) }
	t.Logf("banking queries: finance %d/%d (%.0f%%), medical %d (%.0f%%), support %d (%.0f%%), technical %d (%.0f%%), out of scope %d (%.0f%%)",
		to["finance"], n, pct(to["finance"]), to["medical"], pct(to["medical"]), to["support"], pct(to["support"]),
		to["technical"], pct(to["technical"]), to["out of scope"], pct(to["out of scope"]))
	if pct(to["finance"]) < 85 {
		t.Errorf("%.0f%% of the banking queries routed to finance, want >= 85%%", pct(to["finance"]))
	}
	if to["medical"] > 0 {
		t.Errorf("%d banking queries routed to medical, want none", to["medical"])
	}
}
