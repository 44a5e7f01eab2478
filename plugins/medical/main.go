// Command medical is the MDSA health-information domain plugin: symptoms,
// conditions, medicines, prevention and when to seek care. It never states
// a diagnosis as certain, always carries a disclaimer, and puts an
// emergency notice first when the question describes an emergency.
//
// Build: GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -trimpath -ldflags=-s -o medical.wasm .
package main

import (
	sdk "github.com/mdsa-go/mdsa/sdk/go"
	"github.com/mdsa-go/mdsa/sdk/go/abi"
)

const disclaimer = "This is general health information, not a diagnosis or medical advice. " +
	"Please consult a doctor or other qualified health professional about your situation."

const emergencyNotice = "If this could be an emergency, call your local emergency number " +
	"(for example 911, 112 or 999) or go to the nearest emergency department now."

var keywords = []string{
	"symptom", "fever", "headache", "pain", "cough", "rash", "nausea", "vomiting", "infection", "medication",
	"medicine", "dosage", "side effect", "antibiotic", "vaccine", "allergy", "blood pressure", "cholesterol",
	"diabetes", "blood sugar", "asthma", "pregnant", "pregnancy", "diagnosis", "prescription", "injury",
	"insomnia", "heart rate", "migraine", "ibuprofen", "paracetamol", "dizziness", "sore throat", "vitamin",
	"swelling", "sprain", "stomach ache", "diarrhea", "constipation", "anxiety", "depression", "blood test",
	"pills", "meds", "hurts", "sore", "swollen", "flu", "itchy", "surgery", "tummy", "pee", "poop",
	"pimple", "nosebleed",
}

var examples = []string{
	"I've had a headache behind my eyes for three days, what could cause that?",
	"Is it safe to take ibuprofen and acetaminophen together?",
	"What are the early signs of type 2 diabetes?",
	"My toddler has a fever of 39 degrees, when should I worry?",
	"How long is the flu contagious after symptoms start?",
	"What's a normal resting heart rate for an adult?",
	"Can antibiotics help with a cold?",
	"I get dizzy every time I stand up quickly, is that normal?",
	"what are the side effects of metformin",
	"How much vitamin D should I take in winter?",
	"Is a blood pressure of 145 over 95 considered high?",
	"What's the difference between a migraine and a tension headache?",
	"How can I tell if a cut on my hand is infected?",
	"Which vaccines do adults over 50 need?",
	"I have a red itchy rash on my arms after hiking, what might it be?",
	"Can I drink coffee while pregnant?",
	"What foods help lower LDL cholesterol?",
	"How do I know if my sprained ankle is actually broken?",
	"my throat has been sore for a week and swallowing hurts",
	"Are there natural ways to fall asleep faster without pills?",
	"What should I do if I miss a dose of my birth control pill?",
	"How often should I get a mammogram?",
	"Is it normal to feel short of breath when climbing stairs?",
	"What triggers asthma attacks in adults?",
	"Can seasonal allergies cause a low-grade fever?",
	"What's the recommended dosage of amoxicillin for an ear infection?",
	"I've been feeling nauseous every morning for a week, should I see a doctor?",
	"How long does it take to recover from a concussion?",
	"Does stress really raise your blood pressure?",
	"What are the warning signs of a stroke?",
	"My shoulder hurts when I lift my arm above my head",
	"What can I give a child with an upset stomach?",
	"It burns when I pee, could it be a UTI?",
	"I have a patch of dry, flaky skin that won't go away",
	"What helps with itchy, watery eyes during allergy season?",
	"Is spotting between periods something to worry about?",
	"My ear feels blocked after a cold, how can I clear it?",
	"What's the best thing to take for constipation?",
	"I feel anxious all the time and can't relax, what can help?",
	"How do I know if I'm depressed or just sad?",
	"My vision gets blurry when I read, do I need glasses?",
	"I have a toothache and my gum is swollen",
	"My joints ache and feel stiff every morning, could it be arthritis?",
	"How should I clean a deep cut, and does it need stitches?",
	"I can't fall asleep until 3am no matter what I try",
	"Can I take my blood pressure pills with grapefruit juice?",
	"I hurt my back lifting boxes and now I can barely bend over",
	"Numbness and tingling in my fingers at night, what causes that?",
	"What should I do if someone is choking?",
	"I think I have food poisoning, how long will it last?",
	"my toddler has a croupy cough that gets worse at night",
	"What does a high white blood cell count mean on a blood test?",
	"Should I use ice or heat on a pulled muscle?",
	"Is a sharp pain in my chest when I breathe in something serious?",
	"what's the difference between a viral and a bacterial infection",
	"Are there side effects of stopping sertraline suddenly?",
	"I'm always tired even after sleeping eight hours",
	"how long after a tick bite can Lyme disease symptoms show up",
	"Is it safe to take cold medicine while breastfeeding?",
	"How do I treat a sunburn that is starting to blister?",
	"my head has been pounding since i woke up",
	"pressure in my forehead and cheeks that gets worse when i bend over",
	"my eye is red and crusty when i wake up",
	"I suddenly see lots of floaters and flashes of light in one eye",
	"my eyelid has been twitching for a week",
	"ringing in my ears that won't go away",
	"my ear hurts and yellow stuff is leaking out of it",
	"My baby keeps pulling at his ear and crying at night",
	"stuffy nose for three weeks, is it a sinus infection?",
	"I get nosebleeds almost every day, should I be worried?",
	"white spots on my tonsils and it hurts to swallow",
	"I lost my sense of smell and taste, what could cause that?",
	"my voice has been hoarse for a month",
	"My heart starts racing for no reason while I'm sitting down",
	"sometimes it feels like my heart skips a beat",
	"tightness in my chest when i run",
	"I've had pain in my left arm and I'm sweating a lot",
	"I can't stop coughing up green phlegm",
	"wheezing at night when i lie down",
	"my tummy hurts after i eat pretty much anything",
	"I'm bloated and gassy all the time",
	"I get heartburn and a burning feeling in my chest most nights",
	"sharp pain in the lower right side of my belly",
	"i threw up three times today and can't keep water down",
	"there was blood in my poop this morning",
	"been having the runs for 4 days now",
	"I need to pee all the time, even at night",
	"my pee is really dark, is that bad",
	"pain in my side and lower back that comes in waves, could it be a kidney stone?",
	"I leak a little pee when I sneeze or laugh",
	"pimples on my chin that won't go away no matter what i do",
	"A mole on my back changed shape and got darker",
	"I broke out in hives all over after eating shrimp",
	"there's a painful lump under my armpit",
	"my eczema is flaring up and my hands are cracked and bleeding",
	"a bug bite on my leg is swollen, red and hot",
	"my knee clicks and hurts when i go down stairs",
	"I've had lower back pain for weeks and it's not getting better",
	"woke up with a stiff neck and can't turn my head",
	"My wrist hurts after typing all day",
	"my big toe is red, swollen and hurts to touch",
	"my hands shake when I hold a cup",
	"one side of my face feels numb and droopy",
	"shooting pain from my lower back down my leg",
	"I get panic attacks out of nowhere and feel like I can't breathe",
	"i dont enjoy anything anymore and sleep all day",
	"My partner says I snore and stop breathing at night",
	"I've had nightmares and flashbacks since my car accident",
	"my period is 10 days late but the test was negative",
	"my periods are so painful i can't go to work",
	"Hot flashes and night sweats at 48, is this menopause?",
	"Is it safe to keep exercising while pregnant?",
	"What helps with morning sickness in the first trimester?",
	"mild cramping at 8 weeks pregnant, is that normal",
	"How soon after sex can I take a pregnancy test?",
	"I think I have a yeast infection, what can I use?",
	"I found a lump in my breast",
	"my baby has a bad diaper rash that won't clear up",
	"My newborn hasn't pooped in three days",
	"my 2 year old has red spots all over and a fever",
	"How much children's paracetamol can I give a 20 kg child?",
	"Can teething cause a fever in babies?",
	"My son swallowed a coin, what should I do?",
	"my grandma has been much more confused than usual the last two days",
	"My dad fell and now his hip hurts when he walks",
	"Mom keeps forgetting things, could it be early dementia?",
	"can i drink alcohol while taking antibiotics",
	"I forgot to take my antidepressant for three days",
	"is it ok to take expired pills",
	"Is it safe to take melatonin every night?",
	"Is the flu shot worth getting every year?",
	"I stepped on a rusty nail, do I need a tetanus shot?",
	"my arm is really sore and red after my vaccine",
	"Which shots does my baby need at 12 months?",
	"I burned my hand on the stove, what should I do right now?",
	"I rolled my ankle and it's purple and swollen",
	"hit my head on a cabinet and now i feel sick and sleepy",
	"A dog bit me and broke the skin, do I need to see a doctor?",
	"Got stung by a bee and my whole hand is swelling",
	"my blood sugar is 250 after meals, what does that mean",
	"My inhaler doesn't seem to help anymore",
	"How can I lower my blood pressure without medication?",
	"My A1C is 6.1, am I prediabetic?",
	"I feel shaky and sweaty when I skip meals, is that low blood sugar?",
	"What foods are high in iron if I'm anemic?",
	"Should I go to the ER or urgent care for a deep cut?",
	"When is a fever too high for an adult?",
	"what do elevated liver enzymes on my bloodwork mean",
	"My hemoglobin is low on my lab results, should I be worried?",
}

// emergencySigns in a query make the answer start with emergencyNotice.
var emergencySigns = sdk.NewPhrases(
	"chest pain", "chest pressure", "crushing chest", "can't breathe", "cannot breathe", "struggling to breathe",
	"trouble breathing", "difficulty breathing", "severe bleeding", "bleeding heavily", "won't stop bleeding",
	"unconscious", "passed out", "not breathing", "seizure", "face drooping", "slurred speech",
	"suicidal", "kill myself", "end my life", "overdose", "overdosed", "poisoned", "anaphylaxis",
	"throat is swelling", "throat swelling", "coughing up blood", "vomiting blood",
)

// emergencyMentioned in a response means it already tells the user to get
// urgent help.
var emergencyMentioned = sdk.NewPhrases(
	"emergency number", "emergency services", "emergency department", "emergency room",
	"call 911", "call 112", "call 999", "call an ambulance", "crisis line",
)

// emergencyFirst puts the emergency notice at the top of the answer when the
// query describes an emergency and the answer does not already say so.
func emergencyFirst() sdk.Validator {
	return sdk.Validator{Name: "emergency_first", Check: func(c *sdk.Check) []abi.Issue {
		if !emergencySigns.InQuery(c) || emergencyMentioned.InResponse(c) {
			return nil
		}
		c.Response = emergencyNotice + "\n\n" + c.Response
		return []abi.Issue{{Code: "emergency_notice_added", Severity: abi.SeverityInfo,
			Message: "the query describes possible emergency signs; emergency notice added first"}}
	}}
}

func init() {
	sdk.Register(sdk.Plugin{
		Manifest: abi.Manifest{
			Name:        "medical",
			Version:     version,
			Description: "Health information: symptoms, conditions, medicines, prevention and when to seek care.",
			Keywords:    keywords,
			Examples:    examples,
			Model: abi.ModelPref{
				Tier:       abi.TierDomain,
				Prefer:     []string{"qwen2.5-1.5b-instruct", "qwen2.5-0.5b-instruct"},
				MinContext: 2048,
			},
			Generation: abi.Generation{
				MaxTokens:     512,
				Temperature:   sdk.F32(0.2),
				TopP:          sdk.F32(0.9),
				TopK:          40,
				RepeatPenalty: sdk.F32(1.1),
			},
			Capabilities: []string{abi.CapGenerate},
		},
		System: "You are a cautious health-information assistant. Explain possible causes, self-care " +
			"measures and when to see a professional, in plain language. Never state a diagnosis as " +
			"certain: describe possibilities and what a clinician would check. Never tell someone they " +
			"do not need medical care. For medicines, mention common side effects and interactions and " +
			"refer to the label or a pharmacist for exact doses. If the description suggests an " +
			"emergency (chest pain, trouble breathing, stroke signs, severe bleeding, thoughts of " +
			"self-harm), say first that they should call emergency services. " +
			"Known patient details: age {{context.age|unknown}}, sex {{context.sex|unknown}}.",
		Template:   "{{query}}",
		MaxHistory: 8,
		Validators: []sdk.Validator{
			sdk.MinLength(1),
			sdk.MaxLength(3000),
			sdk.NoRepetition(4, 0.3),
			sdk.NoToxicity(),
			sdk.NoCertainDiagnoses(),
			sdk.Relevance(keywords, 1),
			emergencyFirst(),
			sdk.RequireDisclaimer(disclaimer, "not medical advice", "not a diagnosis",
				"not a substitute for professional medical advice"),
		},
	})
}

func main() {}

// version is the plugin version; builds may stamp it with
// -ldflags "-X main.version=1.2.3".
var version = "1.0.0"
