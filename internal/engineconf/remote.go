package engineconf

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/mdsa-go/mdsa/host/config"
	"github.com/mdsa-go/mdsa/host/engine/openai"
)

// Remote returns the options of the remote engine that runs catalog model
// name on the servers of its [backends.GROUP]. The API key is read from
// the group's api_key_env now; a variable that is named but unset is an
// error, so a typo does not send requests without a key.
func Remote(cfg config.Config, name string, log *slog.Logger) (openai.Options, error) {
	m, ok := cfg.Models[name]
	if !ok || m.Backend == "" {
		return openai.Options{}, fmt.Errorf("engineconf: model %q is not served by a backend", name)
	}
	g, ok := cfg.Backends[m.Backend]
	if !ok {
		return openai.Options{}, fmt.Errorf("engineconf: model %q names backends.%s, which %s lacks", name, m.Backend, cfg.File)
	}
	key := ""
	if g.APIKeyEnv != "" {
		v, set := os.LookupEnv(g.APIKeyEnv)
		if !set || v == "" {
			return openai.Options{}, fmt.Errorf("engineconf: backends.%s.api_key_env names %s, which is not set", m.Backend, g.APIKeyEnv)
		}
		key = v
	}
	o := openai.Options{
		Name: name, Model: m.RemoteModel, Kind: g.Kind, Balance: g.Balance,
		MaxConcurrent: g.MaxConcurrent, Retries: g.Retries, EjectAfter: g.EjectAfter,
		ConnectTimeout: g.ConnectTimeout.Duration, FirstTokenTimeout: g.FirstTokenTimeout.Duration,
		IdleTimeout: g.IdleTimeout.Duration, HealthInterval: g.HealthInterval.Duration, EjectTime: g.EjectTime.Duration,
		Logger: log,
	}
	for _, u := range g.URLs {
		o.Backends = append(o.Backends, openai.Backend{URL: u, APIKey: key})
	}
	return o, nil
}
