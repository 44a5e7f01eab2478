// Command retriever is a test plugin of knowledge bases (ABI 1.1): it
// declares the knowledge base "notes", and its handle export reports what
// the host put in its context and what mdsa_retrieve finds.
package main

import (
	"fmt"
	"strings"

	sdk "github.com/mdsa-go/mdsa/sdk/go"
	"github.com/mdsa-go/mdsa/sdk/go/abi"
	_ "github.com/mdsa-go/mdsa/sdk/go/handle"
)

func init() {
	sdk.Register(sdk.Plugin{
		Manifest: abi.Manifest{
			Name: "retriever", Version: "0.0.1", Keywords: []string{"notes"}, Examples: []string{"what do my notes say"},
			Capabilities: []string{abi.CapRetrieve},
			Knowledge:    &abi.KnowledgeSpec{KB: "notes", TopK: 2},
		},
		Handle: func(env *sdk.Env, req abi.PromptRequest) (abi.HandleResponse, error) {
			r, err := env.Retrieve(abi.RetrieveRequest{Query: req.Query, KB: req.Context["kb"]})
			if err != nil {
				return abi.HandleResponse{}, err
			}
			var titles []string
			for _, p := range r.Passages {
				titles = append(titles, p.Title)
			}
			ctx := strings.ReplaceAll(req.Context[abi.ContextKnowledge], "\n", " ")
			return abi.HandleResponse{Response: fmt.Sprintf("retrieved=%s | context=%s", strings.Join(titles, ","), ctx),
				Validation: abi.Validation{OK: true, Score: 1, Issues: []abi.Issue{}}}, nil
		},
	})
}

func main() {}
