package server

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/mdsa-go/mdsa/host"
	"github.com/mdsa-go/mdsa/internal/tenant"
	"github.com/mdsa-go/mdsa/internal/wire"
	"github.com/mdsa-go/mdsa/sdk/go/abi"
)

// The admin API manages plugins under live traffic:
//
//	GET    /admin/plugins          the running plugins with versions and hashes
//	GET    /admin/plugins/{name}   one of them
//	PUT    /admin/plugins/{name}   body: the .wasm; checked, then swapped in
//	DELETE /admin/plugins/{name}   drained and removed
//	POST   /admin/plugins/reload   bring the plugins in line with plugins_dir
//
// It answers only to an admin key (server.admin_keys, server.admin_key_env);
// with none configured it is off.

// maxPluginBytes caps an uploaded module.
const maxPluginBytes = 64 << 20

// adminKeys are the sha256 sums of the accepted admin keys.
type adminKeys [][32]byte

func loadAdminKeys(hashes []string, env string, getenv func(string) string) (adminKeys, error) {
	var keys adminKeys
	for i, h := range hashes {
		sum, err := tenant.ParseKeyHash(h)
		if err != nil {
			return nil, fmt.Errorf("server.admin_keys[%d]: %w", i, err)
		}
		keys = append(keys, sum)
	}
	if env != "" {
		v := getenv(env)
		if v == "" {
			return nil, fmt.Errorf("server.admin_key_env: environment variable %s is unset or empty", env)
		}
		keys = append(keys, tenant.SumKey(v))
	}
	return keys, nil
}

// allows compares key's sum with every admin key in constant time.
func (k adminKeys) allows(key string) bool {
	if key == "" {
		return false
	}
	sum := tenant.SumKey(key)
	ok := 0
	for _, h := range k {
		ok |= subtle.ConstantTimeCompare(sum[:], h[:])
	}
	return ok == 1
}

func (s *Server) adminRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /admin/plugins", s.admin(s.adminList))
	mux.HandleFunc("GET /admin/plugins/{name}", s.admin(s.adminGet))
	mux.HandleFunc("PUT /admin/plugins/{name}", s.admin(s.adminPut))
	mux.HandleFunc("DELETE /admin/plugins/{name}", s.admin(s.adminDelete))
	mux.HandleFunc("POST /admin/plugins/reload", s.admin(s.adminReload))
}

// admin authenticates an admin request and logs it.
func (s *Server) admin(h func(w http.ResponseWriter, r *http.Request) *apiError) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		var e *apiError
		switch {
		case len(s.adminKeys) == 0:
			e = &apiError{Status: http.StatusForbidden, Type: typePermission, Code: "admin_disabled",
				Message: "the admin API is off: set server.admin_keys or server.admin_key_env", Refused: refusedForbidden}
		case !s.adminKeys.allows(bearer(r)):
			e = &apiError{Status: http.StatusUnauthorized, Type: typeInvalidRequest, Code: "invalid_api_key",
				Message: "missing or wrong admin key (Authorization: Bearer ADMIN_KEY)", Refused: refusedUnauthorized}
		default:
			e = h(w, r)
		}
		if e != nil {
			writeError(w, e)
			if e.Refused != "" {
				s.metrics.ObserveRefused("admin", e.Refused)
			}
		}
		code := http.StatusOK
		if e != nil {
			code = e.Status
		}
		s.log.Info("admin request", "request_id", w.Header().Get(headerRequestID), "method", r.Method,
			"path", clip(r.URL.Path, 200), "code", code, "ms", float64(time.Since(start).Microseconds())/1e3,
			"err", errText(e))
	}
}

func errText(e *apiError) string {
	if e == nil {
		return ""
	}
	if e.Cause != nil {
		return e.Message + ": " + e.Cause.Error()
	}
	return e.Message
}

// bearer is the key of an Authorization: Bearer header.
func bearer(r *http.Request) string {
	a := r.Header.Get("Authorization")
	if len(a) > 7 && strings.EqualFold(a[:7], "bearer ") {
		return strings.TrimSpace(a[7:])
	}
	return ""
}

func (s *Server) adminList(w http.ResponseWriter, r *http.Request) *apiError {
	writeJSON(w, http.StatusOK, map[string]any{"plugins": s.h.Plugins()})
	return nil
}

func (s *Server) adminGet(w http.ResponseWriter, r *http.Request) *apiError {
	name := r.PathValue("name")
	for _, p := range s.h.Plugins() {
		if p.Name == name {
			writeJSON(w, http.StatusOK, p)
			return nil
		}
	}
	return notFoundPlugin(name)
}

func notFoundPlugin(name string) *apiError {
	return &apiError{Status: http.StatusNotFound, Type: typeInvalidRequest, Code: "plugin_not_found",
		Message: fmt.Sprintf("no plugin %q is loaded", clip(name, 100))}
}

// pluginUploadTimeout bounds reading one uploaded plugin (at most
// maxPluginBytes): a stalled upload no longer holds its connection open.
const pluginUploadTimeout = 5 * time.Minute

func (s *Server) adminPut(w http.ResponseWriter, r *http.Request) *apiError {
	name := r.PathValue("name")
	if !abi.ValidName(name) {
		return &apiError{Status: http.StatusBadRequest, Type: typeInvalidRequest, Code: "invalid_name",
			Message: fmt.Sprintf("plugin names use lower-case letters, digits, '_' and '-' (at most %d), as a manifest's name does", abi.MaxNameLen),
			Refused: refusedBadRequest}
	}
	wasm, err := readBody(w, r, maxPluginBytes, s.uploadTimeout)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return &apiError{Status: http.StatusRequestEntityTooLarge, Type: typeInvalidRequest, Code: "request_too_large",
				Message: fmt.Sprintf("a plugin may be at most %d bytes", maxPluginBytes), Refused: refusedTooLarge}
		}
		return &apiError{Status: http.StatusBadRequest, Type: typeInvalidRequest, Code: "bad_body",
			Message: "reading the module: " + err.Error(), Refused: refusedBadRequest}
	}
	ch, err := s.h.InstallPlugin(r.Context(), name, wasm)
	if err != nil {
		if errors.Is(err, host.ErrRefused) {
			// Held like a 429: checking a module costs the host reading
			// it, its shape and maybe a compile, and an upload loop would
			// otherwise repeat that as fast as the refusals come back.
			s.pace.hold(r.Context(), adminHolder, s.pace.delay)
			return &apiError{Status: http.StatusUnprocessableEntity, Type: typeInvalidRequest, Code: "plugin_refused",
				Message: err.Error() + " (the running version keeps serving)", Refused: refusedBadRequest}
		}
		return &apiError{Status: http.StatusInternalServerError, Type: typeServer, Code: "internal_error",
			Message: "installing the plugin failed", Cause: err}
	}
	writeJSON(w, http.StatusOK, wire.FromChange(ch))
	return nil
}

func (s *Server) adminDelete(w http.ResponseWriter, r *http.Request) *apiError {
	name := r.PathValue("name")
	ch, err := s.h.RemovePlugin(r.Context(), name)
	if err != nil {
		if errors.Is(err, host.ErrUnknownDomain) {
			return notFoundPlugin(name)
		}
		return &apiError{Status: http.StatusInternalServerError, Type: typeServer, Code: "internal_error",
			Message: "removing the plugin failed", Cause: err}
	}
	writeJSON(w, http.StatusOK, wire.FromChange(ch))
	return nil
}

func (s *Server) adminReload(w http.ResponseWriter, r *http.Request) *apiError {
	rep, err := s.h.Reload(r.Context())
	if err != nil {
		return &apiError{Status: http.StatusInternalServerError, Type: typeServer, Code: "internal_error",
			Message: "reloading the plugins failed", Cause: err}
	}
	writeJSON(w, http.StatusOK, wire.FromReload(rep))
	return nil
}
