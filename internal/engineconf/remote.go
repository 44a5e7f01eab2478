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
	lookup := func(env, key string) (string, error) {
		if env == "" {
			return "", nil
		}
		v, set := os.LookupEnv(env)
		if !set || v == "" {
			return "", fmt.Errorf("engineconf: backends.%s.%s names %s, which is not set", m.Backend, key, env)
		}
		return v, nil
	}
	key, err := lookup(g.APIKeyEnv, "api_key_env")
	if err != nil {
		return openai.Options{}, err
	}
	o := openai.Options{
		Name: name, Model: m.RemoteModel, Kind: g.Kind, Balance: g.Balance,
		MaxConcurrent: g.MaxConcurrent, Retries: g.Retries, EjectAfter: g.EjectAfter,
		ConnectTimeout: g.ConnectTimeout.Duration, FirstTokenTimeout: g.FirstTokenTimeout.Duration,
		IdleTimeout: g.IdleTimeout.Duration, HealthInterval: g.HealthInterval.Duration, EjectTime: g.EjectTime.Duration,
		Logger: log,
	}
	for i, u := range g.URLs {
		k := key
		if i < len(g.APIKeyEnvs) && g.APIKeyEnvs[i] != "" {
			if k, err = lookup(g.APIKeyEnvs[i], "api_key_envs"); err != nil {
				return openai.Options{}, err
			}
		}
		o.Backends = append(o.Backends, openai.Backend{URL: u, APIKey: k})
	}
	return o, nil
}
