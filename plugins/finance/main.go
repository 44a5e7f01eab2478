// Command finance is the MDSA personal-finance domain plugin: budgeting,
// saving, debt, credit, investing basics, retirement accounts and taxes.
// It never promises returns and always carries a not-financial-advice note.
//
// Build: GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -trimpath -ldflags=-s -o finance.wasm .
package main

import (
	sdk "github.com/mdsa-go/mdsa/sdk/go"
	"github.com/mdsa-go/mdsa/sdk/go/abi"
)

const disclaimer = "This is general information, not personalised financial advice. " +
	"Consider your own situation or a licensed financial adviser before making decisions."

var keywords = []string{
	"budget", "savings", "emergency fund", "invest", "stock", "bond", "index fund", "etf",
	"mutual fund", "portfolio", "diversification", "dividend", "retirement", "401k", "ira",
	"roth", "pension", "mortgage", "loan", "interest rate", "apr", "credit score", "debt",
	"compound interest", "inflation", "tax", "capital gains", "net worth", "annuity", "refinance",
}

var examples = []string{
	"How much of my paycheck should I put into savings each month?",
	"What's the difference between a Roth IRA and a traditional IRA?",
	"Is it better to pay off my student loans or invest in index funds?",
	"How do I build an emergency fund when I live paycheck to paycheck?",
	"Explain compound interest like I'm twelve",
	"Should I refinance my mortgage if rates dropped by one percent?",
	"What is an expense ratio and why does it matter for ETFs?",
	"my credit score went down 40 points after I paid off my car, why",
	"How does the 50/30/20 budgeting rule work?",
	"Can you explain what a bond yield is?",
	"What happens to my 401k if I change jobs?",
	"How are capital gains on stocks taxed if I held them for two years?",
	"Is it smart to keep all my money in a high-yield savings account?",
	"What's dollar-cost averaging and is it better than investing a lump sum?",
	"how do I start investing with only 100 dollars",
	"Should I use the avalanche or snowball method to pay down credit card debt?",
	"What does diversification mean for a beginner's portfolio?",
	"How much house can I afford on a 70k salary?",
	"Are dividends from ETFs taxed differently than interest income?",
	"What is inflation doing to the cash sitting in my checking account?",
	"When should I start taking Social Security benefits?",
	"What is an annuity and who should consider buying one?",
	"How do I calculate my net worth?",
	"Is a 15-year or 30-year mortgage better for a first-time buyer?",
	"what's the employer match on a 401k and should i always max it",
	"How do index funds differ from actively managed mutual funds?",
	"How much should I have saved for retirement by age 40?",
	"Does opening a new credit card hurt my credit score?",
	"What is a good debt-to-income ratio for getting a loan?",
	"How do tax-loss harvesting strategies work?",
}

func init() {
	sdk.Register(sdk.Plugin{
		Manifest: abi.Manifest{
			Name:        "finance",
			Version:     "1.0.0",
			Description: "Personal finance: budgeting, saving, debt, credit, investing basics, retirement and taxes.",
			Keywords:    keywords,
			Examples:    examples,
			Model: abi.ModelPref{
				Tier:       abi.TierDomain,
				Prefer:     []string{"qwen2.5-1.5b-instruct", "qwen2.5-0.5b-instruct"},
				MinContext: 2048,
			},
			Generation: abi.Generation{
				MaxTokens:     512,
				Temperature:   sdk.F32(0.3),
				TopP:          sdk.F32(0.9),
				TopK:          40,
				RepeatPenalty: sdk.F32(1.1),
			},
			Capabilities: []string{abi.CapGenerate},
		},
		System: "You are a careful personal-finance educator. Explain budgeting, saving, debt, credit, " +
			"investing, retirement accounts and taxes in plain language with concrete numbers where they help. " +
			"Describe trade-offs and risks honestly: never promise or guarantee returns, never recommend a " +
			"specific security as a sure thing, and say when rules differ by country or depend on the person's " +
			"situation. Keep answers under 300 words unless asked for more. " +
			"The user's country, if known: {{context.country|not stated}}.",
		Template:   "{{query}}",
		MaxHistory: 8,
		Validators: []sdk.Validator{
			sdk.MinLength(1),
			sdk.MaxLength(3000),
			sdk.NoRepetition(4, 0.3),
			sdk.NoToxicity(),
			sdk.NoPromisedReturns(),
			sdk.Relevance(keywords, 1),
			sdk.RequireDisclaimer(disclaimer, "not financial advice", "not personalised financial advice",
				"not personalized financial advice"),
		},
	})
}

func main() {}
