package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"

	sdk "github.com/mdsa-go/mdsa/sdk/go"
)

// The finance domain's tools: arithmetic a small model gets wrong, done
// exactly.

const loanPaymentParams = `{
  "type": "object",
  "properties": {
    "principal": {"type": "number", "description": "the amount borrowed", "exclusiveMinimum": 0, "maximum": 1e12},
    "annual_rate_percent": {"type": "number", "description": "the yearly interest rate in percent, e.g. 4.5", "minimum": 0, "maximum": 100},
    "years": {"type": "number", "description": "the term in years", "exclusiveMinimum": 0, "maximum": 100}
  },
  "required": ["principal", "annual_rate_percent", "years"],
  "additionalProperties": false
}`

var loanPayment = sdk.Tool{
	Name: "loan_payment",
	Description: "Monthly payment, total paid and total interest of a fixed-rate loan repaid in equal monthly " +
		"instalments (a mortgage, car or personal loan). Use it for any question about such payments.",
	Parameters: loanPaymentParams,
	Run: func(_ *sdk.Env, raw json.RawMessage) (string, error) {
		var a struct {
			Principal float64 `json:"principal"`
			Rate      float64 `json:"annual_rate_percent"`
			Years     float64 `json:"years"`
		}
		if err := json.Unmarshal(raw, &a); err != nil {
			return "", fmt.Errorf("arguments: %w", err)
		}
		pay, err := monthlyPayment(a.Principal, a.Rate, a.Years)
		if err != nil {
			return "", err
		}
		n := math.Round(a.Years * 12)
		total := pay * n
		out, _ := json.Marshal(map[string]any{
			"monthly_payment": round2(pay),
			"payments":        n,
			"total_paid":      round2(total),
			"total_interest":  round2(total - a.Principal),
		})
		return string(out), nil
	},
}

// monthlyPayment is the annuity payment of principal over years at an
// annual rate in percent, compounded monthly.
func monthlyPayment(principal, ratePercent, years float64) (float64, error) {
	n := math.Round(years * 12)
	switch {
	case !(principal > 0) || principal > 1e12:
		return 0, errors.New("principal must be above 0 and at most 1e12")
	case !(ratePercent >= 0) || ratePercent > 100:
		return 0, errors.New("annual_rate_percent must be 0 to 100")
	case !(n >= 1) || years > 100:
		return 0, errors.New("years must give at least one monthly payment and be at most 100")
	}
	r := ratePercent / 100 / 12
	if r == 0 {
		return principal / n, nil
	}
	return principal * r / (1 - math.Pow(1+r, -n)), nil
}

func round2(x float64) float64 { return math.Round(x*100) / 100 }
