// legal: the MDSA "legal information" domain plugin, written in
// AssemblyScript with sdk/assemblyscript. It covers general legal
// information (tenancy, employment contracts, small claims, consumer
// rights, everyday contracts and disputes) and never gives legal advice:
// every answer carries a not-legal-advice disclaimer.
//
// Build: ./build.sh  (writes legal.wasm next to this file)

import * as mdsa from "../../../sdk/assemblyscript/assembly/index";

const DISCLAIMER =
  "This is general legal information, not legal advice. Laws differ between countries and states " +
  "and change over time: for advice on your situation, contact a qualified lawyer or a legal aid service.";

const KEYWORDS: string[] = [
  "law", "legal", "lawyer", "attorney", "solicitor", "legal aid", "contract", "clause", "lease",
  "tenancy", "tenant", "landlord", "eviction", "security deposit", "rent increase", "notice period",
  "employment contract", "employer", "unfair dismissal", "wrongful termination", "severance",
  "non-compete", "overtime", "minimum wage", "discrimination", "harassment", "small claims",
  "small claims court", "lawsuit", "sue", "court", "judgment", "mediation", "arbitration",
  "consumer rights", "warranty", "faulty product", "chargeback",
  "cooling-off period", "terms and conditions", "liability", "negligence", "damages", "statute of limitations",
  "last will", "testament", "power of attorney", "copyright", "trademark", "gdpr", "data protection",
  "defamation", "divorce", "custody", "child support", "letter before action", "demand letter",
  "breach of contract", "employment tribunal", "tribunal", "legally binding", "landlord-tenant",
];

const EXAMPLES: string[] = [
  "My landlord won't return my security deposit, what can I do?",
  "How much notice does my landlord have to give before raising the rent?",
  "Can my landlord enter my flat without telling me first?",
  "I got an eviction notice taped to my door, is that even legal?",
  "What's the difference between a fixed-term lease and a periodic tenancy?",
  "the landlord says I have to pay for repainting the whole apartment when I move out, is that normal",
  "Mould in my rental is making my kids sick and the landlord ignores my emails",
  "Can I break my lease early if I lose my job?",
  "Who is responsible for repairs in a rented house, me or the landlord?",
  "My roommate moved out and stopped paying rent, am I liable for his share?",
  "What should I look for before signing an employment contract?",
  "Is a non-compete clause in my contract actually enforceable?",
  "my boss hasn't paid me overtime for three months, what are my options",
  "Can I be fired for posting about my job on social media?",
  "What counts as unfair dismissal?",
  "How much notice do I have to give when I resign?",
  "They want me to sign a settlement agreement after firing me, should I be worried about anything?",
  "Is it legal for my employer to cut my hours without warning?",
  "I think I'm being paid less than a male colleague for the same job, what can I do?",
  "What is constructive dismissal?",
  "Do I get paid for my unused holiday when I leave a job?",
  "How do I take someone to small claims court?",
  "What's the maximum amount I can claim in small claims court?",
  "A contractor took my deposit and never showed up to do the work, can I sue him?",
  "How do I write a letter before action?",
  "What happens if I win in small claims court but the other side doesn't pay?",
  "do I need a lawyer for small claims",
  "How long do I have to file a claim after a car accident?",
  "The laptop I bought broke after two months and the shop refuses to repair it",
  "Can a store refuse to give me a refund if I have the receipt?",
  "I cancelled an online order within 14 days but they still charged me",
  "What are my rights if a product I bought online never arrives?",
  "Is a chargeback the same as a refund, and when can I ask my bank for one?",
  "A gym won't let me cancel my membership, what can I do?",
  "Are extended warranties worth it or do I already have those rights by law?",
  "What does 'sold as seen' mean when buying a used car?",
  "Is a verbal agreement legally binding?",
  "What makes a contract valid?",
  "Someone is posting lies about me online, is that defamation?",
  "Can I use a song in my YouTube video if I give credit to the artist?",
  "A company leaked my personal data, what are my rights?",
  "How do I make a simple will, and does it have to be witnessed?",
  "What is a power of attorney and when would I need one?",
  "My neighbour's tree is damaging my fence, who pays for it?",
  "How does mediation work and is the result binding?",
  "What is the statute of limitations for unpaid debts?",
  "i signed a contract at my door with a salesman yesterday, can i still cancel",
  "What's the difference between a solicitor and a barrister?",
  "How can I find free legal aid if I can't afford a lawyer?",
  "Can my employer read my work emails?",
];

const BANNED: string[] = [
  "you will definitely win",
  "you will certainly win",
  "you are guaranteed to win",
  "guaranteed to win",
  "100% chance of winning",
  "i am your lawyer",
  "as your lawyer",
  "as your attorney",
  "this is legal advice",
  "you don't need to read the contract",
  "just ignore the court",
  "ignore the summons",
];

const TIME_UNITS = new mdsa.PhraseSet(["day", "days", "week", "weeks", "month", "months", "year", "years"]);
const CAVEATS = new mdsa.PhraseSet([
  "jurisdiction", "jurisdictions", "country", "countries", "state", "states", "local", "vary", "varies",
  "depends", "depend", "differ", "differs",
]);

// isDigits reports whether s[start:end] is a run of 1-6 ASCII digits.
function isDigits(s: string, start: i32, end: i32): bool {
  if (end <= start || end - start > 6) return false;
  for (let i = start; i < end; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return false;
  }
  return true;
}

// hasCurrency reports whether s contains "$", "£" or "€".
function hasCurrency(s: string): bool {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c == 0x24 || c == 0xa3 || c == 0x20ac) return true;
  }
  return false;
}

// jurisdictionCaveat warns when an answer quotes concrete deadlines ("within
// 14 days") or amounts ("$500") without saying that the rules depend on
// where the user lives. The cheap word-set lookups run first.
function jurisdictionCaveat(c: mdsa.Check): void {
  const words = c.words();
  if (CAVEATS.find(words, new StaticArray<bool>(CAVEATS.texts.length), 1) > 0) return;
  let concrete = false;
  if (TIME_UNITS.find(words, new StaticArray<bool>(TIME_UNITS.texts.length), 1) > 0) {
    // A number directly followed by a unit of time.
    for (let i = 0; i + 1 < words.length && !concrete; i++) {
      if (!isDigits(c.response, words.starts[i], words.ends[i])) continue;
      for (let k = 0; k < TIME_UNITS.words.length && !concrete; k++) {
        concrete = words.hashes[i + 1] == TIME_UNITS.words[k].hashes[0];
      }
    }
  }
  if (!concrete && !hasCurrency(c.response)) return;
  c.report(
    "missing_jurisdiction_caveat",
    mdsa.SEVERITY_WARNING,
    "response quotes specific deadlines or amounts without saying that the rules depend on the jurisdiction",
  );
}

const plugin = new mdsa.Plugin("legal", "1.0.0");
plugin.description =
  "General legal information: tenancy, employment contracts, small claims, consumer rights, everyday contracts and disputes. Never legal advice.";
plugin.keywords = KEYWORDS;
plugin.examples = EXAMPLES;
plugin.model.tier = mdsa.TIER_DOMAIN;
plugin.model.prefer = ["qwen2.5-1.5b-instruct", "qwen2.5-0.5b-instruct"];
plugin.model.minContext = 2048;
plugin.generation.maxTokens = 512;
plugin.generation.temperature = 0.2;
plugin.generation.topP = 0.9;
plugin.generation.topK = 40;
plugin.generation.repeatPenalty = 1.1;
plugin.capabilities = [mdsa.CAP_GENERATE];
plugin.system =
  "You are a careful legal information assistant. Explain how the law generally works for tenancy, " +
  "employment, small claims, consumer rights, contracts and everyday disputes, in plain language. " +
  "You give general information, never legal advice: do not tell the user what they should do in their " +
  "specific case, never predict the outcome of a case or promise a result, and never claim to be their lawyer. " +
  "Rules differ between countries and states: say so, name the kind of rule that usually applies, and point to " +
  "official sources, courts, tribunals, consumer bodies or legal aid services where the user can check. " +
  "If someone faces a deadline, an eviction, arrest or violence, tell them to get qualified help quickly. " +
  "Keep answers under 300 words unless asked for more. " +
  "The user's jurisdiction, if known: {{context.country|not stated}}.";
plugin.template = "{{query}}";
plugin.maxHistory = 8;
plugin.validators = [
  mdsa.minLength(1),
  mdsa.maxLength(3000),
  mdsa.bannedTerms(BANNED),
  mdsa.customValidator("jurisdiction_caveat", jurisdictionCaveat),
  mdsa.requireDisclaimer(DISCLAIMER, ["not legal advice", "does not constitute legal advice"]),
];
mdsa.register(plugin);

export { describe, prompt, validate } from "../../../sdk/assemblyscript/assembly/index";
