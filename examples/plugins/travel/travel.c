/*
 * travel: the MDSA "travel" domain plugin, written in C with sdk/c/mdsa.h.
 * It covers trip planning, visas and passports, flights, packing, jet lag
 * and travel insurance basics, and always reminds the user to confirm entry
 * requirements with official sources.
 *
 * Build: ./build.sh  (writes travel.wasm next to this file)
 */
#include "../../../sdk/c/mdsa.h"

#define DISCLAIMER                                                                                  \
	"Entry, visa and health rules change often and depend on your nationality: confirm them with " \
	"the official government or embassy website of your destination before you travel."

static const char *const keywords[] = {
	"travel", "trip", "itinerary", "vacation", "holiday", "flight", "airline", "airport", "layover",
	"connecting flight", "boarding pass", "carry-on", "checked baggage", "lost luggage", "passport",
	"visa", "visa on arrival", "e-visa", "esta", "schengen", "border control", "customs", "travel insurance",
	"jet lag", "time zone", "packing list", "packing", "hotel", "hostel", "booking", "backpacking",
	"road trip", "rental car", "train pass", "travel adapter", "vaccinations", "travel advisory",
	"currency exchange", "travel budget", "overbooked", "flight delay", "flight cancellation", "tourist",
	"sightseeing", "destination", "cruise", "solo travel", "travel with kids",
	NULL,
};

static const char *const examples[] = {
	"Plan a 7-day itinerary for Japan in April on a mid-range budget",
	"What's the best way to spend three days in Lisbon?",
	"How far in advance should I book flights to get a good price?",
	"Is it cheaper to fly on a Tuesday or is that a myth?",
	"Do I need a visa to visit Canada with a UK passport?",
	"How long before my passport expires can I still travel abroad?",
	"what's the difference between an ESTA and a real US visa",
	"Can I enter the Schengen area if my passport was issued 11 years ago?",
	"How do I apply for an e-visa for India and how long does it take?",
	"My passport got stolen in Rome, what do I do now?",
	"Can I travel with a passport that has a small tear on the photo page?",
	"how many days can I stay in Europe without a visa as an american",
	"What should I pack for two weeks in Southeast Asia in the rainy season?",
	"Give me a carry-on only packing list for a 5-day business trip",
	"Can I bring a power bank in my checked luggage?",
	"what liquids am I allowed to take through airport security",
	"Do I need a travel adapter for the UK if I'm coming from the US?",
	"How do I get over jet lag after flying from New York to Tokyo?",
	"Is it better to sleep on the plane or stay awake to beat jet lag?",
	"What helps with jet lag when flying east?",
	"Is travel insurance worth it for a one-week trip to Mexico?",
	"What does travel insurance usually cover and what does it leave out?",
	"Does my credit card's travel insurance cover trip cancellation?",
	"Will travel insurance pay if I cancel because I got sick?",
	"My flight was cancelled, am I entitled to compensation?",
	"The airline lost my suitcase, how do I file a claim?",
	"What's the minimum layover time I should book for an international connection?",
	"I missed my connecting flight because the first one was late, what happens now?",
	"How early should I get to the airport for an international flight?",
	"Is it safe to book a hostel dorm as a solo female traveller?",
	"Best way to get from Heathrow to central London?",
	"Should I buy a Eurail pass or point-to-point train tickets for a month in Europe?",
	"What do I need to rent a car in Italy with a US driving licence?",
	"Tips for a road trip across the American Southwest in summer",
	"What vaccinations do I need before travelling to Kenya?",
	"How much cash should I bring to Vietnam and where should I exchange money?",
	"Is it rude not to tip in restaurants in Japan?",
	"How do I plan a budget backpacking trip through South America?",
	"What are good tips for travelling long-haul with a toddler?",
	"Can I travel to another country with a criminal record?",
	"Which documents does a child need to travel abroad with only one parent?",
	"Is it worth getting a local SIM card or an eSIM when travelling abroad?",
	"the hotel overbooked and gave away my room, what are my options",
	"How do cruise excursions work, and can I explore ports on my own?",
	"What's a realistic daily budget for two weeks in Thailand?",
	NULL,
};

static const char *const prefer[] = {"qwen2.5-1.5b-instruct", "qwen2.5-0.5b-instruct", NULL};
static const char *const capabilities[] = {MDSA_CAP_GENERATE, NULL};

/* Claims a careful travel answer never makes. */
static const char *const banned[] = {
	"visa is guaranteed",
	"guaranteed visa approval",
	"guaranteed approval",
	"overstaying is fine",
	"overstaying is not a problem",
	"nobody checks passports",
	"no one will check",
	"lie to immigration",
	"lie to the border officer",
	"you don't need travel insurance",
	NULL,
};

static const char *const disclaimer_alternatives[] = {
	"check the official government website",
	"confirm with the embassy",
	"check with the embassy",
	NULL,
};

/*
 * safety_referral: an answer about a lost or stolen passport, an arrest or
 * a medical emergency abroad should point to the embassy or consulate (or
 * emergency services). Warns when it does not.
 */
static void safety_referral(mdsa_check *c) {
	static const char *const urgent[] = {
		"stolen passport", "passport got stolen", "passport was stolen", "lost my passport", "lost passport",
		"arrested", "hospital", "emergency", NULL,
	};
	bool is_urgent = false;
	for (int i = 0; urgent[i] != NULL && !is_urgent; i++) is_urgent = mdsa_check_query_has_phrase(c, urgent[i]);
	if (!is_urgent) return;
	if (mdsa_check_has_phrase(c, "embassy") || mdsa_check_has_phrase(c, "consulate") ||
	    mdsa_check_has_phrase(c, "emergency services") || mdsa_check_has_phrase(c, "emergency number"))
		return;
	mdsa_report(c, "missing_referral", MDSA_WARNING,
	            mdsa_s("urgent situation abroad but the answer does not point to the embassy, consulate or emergency services"));
}

static const mdsa_validator validators[] = {
	MDSA_MIN_LENGTH(1),
	MDSA_MAX_LENGTH(3000),
	MDSA_BANNED_TERMS(banned),
	MDSA_CUSTOM_VALIDATOR("safety_referral", safety_referral),
	MDSA_REQUIRE_DISCLAIMER(DISCLAIMER, disclaimer_alternatives),
	MDSA_VALIDATORS_END,
};

static const mdsa_plugin travel = {
	.name = "travel",
	.version = "1.0.0",
	.description = "Travel: trip planning, visas and passports, flights, packing, jet lag and travel insurance basics.",
	.keywords = keywords,
	.examples = examples,
	.tier = MDSA_TIER_DOMAIN,
	.prefer = prefer,
	.min_context = 2048,
	.generation = {.max_tokens = 512, .temperature = 0.4f, .top_p = 0.9f, .top_k = 40, .repeat_penalty = 1.1f},
	.capabilities = capabilities,
	.system = "You are an experienced, practical travel planner. Help with itineraries, flights and connections, "
	          "passports and visas, packing, jet lag, getting around, budgets and travel insurance basics. "
	          "Give concrete, realistic suggestions and say what to book or check first. Entry rules depend on "
	          "nationality and change often: never state a visa requirement as certain, and point to the "
	          "destination's official government or embassy website. For a lost or stolen passport, an arrest "
	          "or a medical emergency abroad, tell the user to contact their embassy or consulate and local "
	          "emergency services. Keep answers under 300 words unless asked for more. "
	          "The traveller's home country, if known: {{context.country|not stated}}.",
	.template_ = "{{query}}",
	.max_history = 8,
	.validators = validators,
};

MDSA_PLUGIN(travel)

/* Build with -DMDSA_TRAVEL_HANDLE to add the optional handle export (the
 * SDK's tests do, to exercise mdsa_generate). */
#ifdef MDSA_TRAVEL_HANDLE
MDSA_PLUGIN_HANDLE(travel)
#endif
