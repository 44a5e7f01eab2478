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
	norm := func(s string) string {
		return strings.Join(strings.FieldsFunc(strings.ToLower(s), func(r rune) bool {
			return !unicode.IsLetter(r) && !unicode.IsDigit(r)
		}), " ")
	}
	trained := map[string]string{}
	for _, p := range h.Plugins() {
		for _, e := range p.Examples {
			trained[norm(e)] = p.Name
		}
	}
	all := slices.Concat(heldOutOutOfScope, ambiguous)
	for _, qs := range heldOutDomainQueries {
		all = append(all, qs...)
	}
	for _, nm := range nearMisses {
		all = append(all, nm.query)
	}
	for _, q := range all {
		if d, ok := trained[norm(q)]; ok {
			t.Errorf("held-out query %q is one of the %s plugin's examples", q, d)
		}
	}

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
