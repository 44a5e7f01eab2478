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
	"symptom", "fever", "headache", "pain", "cough", "rash", "nausea", "infection",
	"medication", "dosage", "side effect", "antibiotic", "vaccine", "allergy", "blood pressure",
	"cholesterol", "diabetes", "asthma", "pregnancy", "doctor", "diagnosis", "prescription",
	"injury", "sleep", "heart rate", "migraine", "ibuprofen", "dizziness", "sore throat", "vitamin",
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
			Version:     "1.0.0",
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
