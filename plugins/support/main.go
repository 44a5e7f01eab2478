// Command support is the MDSA customer-support domain plugin for an online
// shop or subscription service: orders, shipping, returns, refunds,
// accounts, billing and warranties. It never echoes card numbers, email
// addresses or phone numbers back: they are redacted from every answer.
//
// Build: GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -trimpath -ldflags=-s -o support.wasm .
package main

import (
	sdk "github.com/mdsa-go/mdsa/sdk/go"
	"github.com/mdsa-go/mdsa/sdk/go/abi"
)

var keywords = []string{
	"order", "shipping", "delivery", "tracking number", "package", "return", "refund",
	"exchange", "account", "password", "login", "subscription", "cancel", "billing",
	"invoice", "receipt", "warranty", "coupon", "promo code", "discount", "damaged",
	"customer service", "support ticket", "unsubscribe", "checkout", "cart",
}

var examples = []string{
	"Where is my order? It was supposed to arrive yesterday.",
	"How do I return a pair of shoes that don't fit?",
	"I was charged twice for the same order, can you fix it?",
	"My package says delivered but it's not at my door",
	"How long does a refund take to show up after I send the item back?",
	"I forgot my password and the reset email never arrives",
	"Can I change the shipping address on an order I already placed?",
	"How do I cancel my monthly subscription?",
	"The blender I received is cracked, what should I do?",
	"my promo code says invalid at checkout",
	"Can I exchange a sweater for a different size instead of returning it?",
	"Do you ship to Canada and how much does it cost?",
	"I need a copy of the invoice for my last purchase for my company",
	"Why was my account locked after I tried to log in?",
	"The tracking number you sent me doesn't work on the courier's site",
	"Is the coffee machine still under warranty after 14 months?",
	"How do I delete my account and all my data?",
	"I ordered the wrong color, can I swap it before it ships?",
	"Can I get a refund for the part of the month I didn't use?",
	"items keep disappearing from my cart",
	"How do I stop getting your marketing emails?",
	"Part of my order is missing from the box",
	"Can I pick up my order in store instead of having it delivered?",
	"What's your return policy for opened electronics?",
	"I want to speak to a human agent about my complaint",
	"How do I update the payment method on my subscription?",
	"My gift card balance shows zero but I never used it",
	"The app won't let me check out, it just spins",
}

func init() {
	sdk.Register(sdk.Plugin{
		Manifest: abi.Manifest{
			Name:        "support",
			Version:     "1.0.0",
			Description: "Customer support for an online shop or subscription: orders, shipping, returns, refunds, accounts and billing.",
			Keywords:    keywords,
			Examples:    examples,
			Model: abi.ModelPref{
				Tier:       abi.TierDomain,
				Prefer:     []string{"qwen2.5-0.5b-instruct", "qwen2.5-1.5b-instruct"},
				MinContext: 2048,
			},
			Generation: abi.Generation{
				MaxTokens:     384,
				Temperature:   sdk.F32(0.4),
				TopP:          sdk.F32(0.9),
				TopK:          40,
				RepeatPenalty: sdk.F32(1.1),
			},
			Capabilities: []string{abi.CapGenerate},
		},
		System: "You are a friendly, efficient customer-support agent for {{context.company|our shop}}. " +
			"Help with orders, shipping, returns, refunds, exchanges, accounts, billing and warranties. " +
			"Give clear next steps in a few short sentences or a numbered list. Do not invent order " +
			"details, prices or policies you were not given; say what information you need instead. " +
			"Never ask for or repeat full card numbers, passwords, email addresses or phone numbers. " +
			"If the customer is upset, acknowledge it briefly and offer to escalate to a human agent. " +
			"Store policy notes: {{context.policy|none provided}}.",
		Template:   "{{query}}",
		MaxHistory: 10,
		Validators: []sdk.Validator{
			sdk.MinLength(1),
			sdk.MaxLength(2000),
			sdk.NoRepetition(4, 0.3),
			sdk.NoToxicity(),
			sdk.RedactPII(),
			sdk.Relevance(keywords, 1),
		},
	})
}

func main() {}
