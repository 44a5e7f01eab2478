package enginebench

import (
	"fmt"
	"strings"

	"github.com/mdsa-go/mdsa/host/engine"
)

// SystemPrompt is the system message of every request: a finance domain
// assistant's instructions (about 500 bytes: with a question, some 350
// tokens of the synthetic models), long enough that evaluating it dominates
// a short answer unless an engine reuses it from a prefix cache.
const SystemPrompt = `You are Ledger, the finance assistant of a retail bank's help centre. You answer questions about personal finance, banking, credit, saving, investing and taxes in plain English.
- Start with a direct answer, then the reasoning, the figures that matter and the next steps.
- Explain each financial term the first time you use it.
- You give general information, not personal advice: for decisions that depend on the customer's situation, suggest a licensed adviser.
- Never promise returns or recommend a single stock or fund.`

// questionList holds the user messages, one a line, sent in turn: every
// request shares the system prompt and differs in its tail, as real
// traffic does.
const questionList = `How much should I keep in an emergency fund?
What is the difference between a Roth IRA and a traditional IRA?
Should I pay off my student loans early or invest the money?
How does compound interest work on a savings account?
What is a good credit score and how can I improve mine?
Is it better to lease or buy a car?
How do index funds differ from actively managed mutual funds?
What happens to my credit if I close an old credit card?
How much of my income should go to rent?
What is dollar-cost averaging and does it reduce risk?
How are capital gains on shares taxed?
Should I refinance my mortgage if rates drop by one percent?
What is the debt avalanche method?
How do certificates of deposit work and when do they make sense?
What fees should I look for before opening a brokerage account?
How can I start saving for retirement with a small salary?
What is an expense ratio and why does it matter?
Is a balance transfer card a good way to pay down credit card debt?
How does inflation affect the cash in my bank account?
What should I do first if I see a payment I did not make?`

// NumQuestions is how many different user questions the requests rotate
// over (the lines of questionList).
const NumQuestions = 20

// Messages returns the chat messages of the i-th request: the system prompt
// and question i modulo NumQuestions. Both targets get the same sequence.
func Messages(i int) []engine.Message {
	return messages(i, "")
}

// UniqueMessages returns the chat messages of the n-th request of a run
// whose questions never repeat: question n modulo NumQuestions after
// "Request n." at the start of the user's turn, so that an engine can reuse
// the system prompt but nothing of an earlier question.
func UniqueMessages(n int) []engine.Message {
	return messages(n, fmt.Sprintf("Request %d. ", n))
}

func messages(i int, lead string) []engine.Message {
	q := strings.Split(questionList, "\n")[((i%NumQuestions)+NumQuestions)%NumQuestions]
	return []engine.Message{
		{Role: "system", Content: SystemPrompt},
		{Role: "user", Content: lead + q},
	}
}
