package console

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"sync"
	"time"
)

// Session is one login to the console.
type Session struct {
	// Token goes in the session cookie; CSRF must come back in the
	// X-CSRF-Token header of every change.
	Token, CSRF string
	// Admin sessions see every tenant and may change plugins; a tenant's
	// session sees that tenant only.
	Admin   bool
	Tenant  string
	Created time.Time
	Expires time.Time
}

// Scope is whose traffic the session may see.
func (s *Session) Scope() Scope { return Scope{All: s.Admin, Tenant: s.Tenant} }

// CheckCSRF reports whether token is the session's CSRF token (in
// constant time).
func (s *Session) CheckCSRF(token string) bool {
	return token != "" && subtle.ConstantTimeCompare([]byte(token), []byte(s.CSRF)) == 1
}

// Sessions holds the logins, at most max of them (the oldest is dropped
// first), each valid for ttl. Tokens are kept by their sha256 only. It is
// safe for concurrent use.
type Sessions struct {
	mu  sync.Mutex
	m   map[[sha256.Size]byte]*Session
	max int
	ttl time.Duration
	now func() time.Time
}

// NewSessions keeps at most maxN sessions of ttl each.
func NewSessions(maxN int, ttl time.Duration) *Sessions {
	return &Sessions{m: map[[sha256.Size]byte]*Session{}, max: max(maxN, 1), ttl: ttl, now: time.Now}
}

// Create logs in: an admin (tenant "") or one tenant.
func (ss *Sessions) Create(admin bool, tenant string) *Session {
	now := ss.now()
	s := &Session{Token: randomToken(), CSRF: randomToken(), Admin: admin, Tenant: tenant,
		Created: now, Expires: now.Add(ss.ttl)}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if len(ss.m) >= ss.max {
		ss.sweep(now)
	}
	for len(ss.m) >= ss.max {
		var oldest [sha256.Size]byte
		var at time.Time
		first := true
		for k, v := range ss.m {
			if first || v.Created.Before(at) {
				oldest, at, first = k, v.Created, false
			}
		}
		delete(ss.m, oldest)
	}
	ss.m[sha256.Sum256([]byte(s.Token))] = s
	return s
}

// sweep drops expired sessions; ss.mu is held.
func (ss *Sessions) sweep(now time.Time) {
	for k, v := range ss.m {
		if !now.Before(v.Expires) {
			delete(ss.m, k)
		}
	}
}

// Get returns the live session of token.
func (ss *Sessions) Get(token string) (*Session, bool) {
	if token == "" || len(token) > 100 {
		return nil, false
	}
	k := sha256.Sum256([]byte(token))
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s, ok := ss.m[k]
	if !ok {
		return nil, false
	}
	if !ss.now().Before(s.Expires) {
		delete(ss.m, k)
		return nil, false
	}
	return s, true
}

// Delete logs the session of token out.
func (ss *Sessions) Delete(token string) {
	k := sha256.Sum256([]byte(token))
	ss.mu.Lock()
	delete(ss.m, k)
	ss.mu.Unlock()
}

// Len is how many sessions are kept.
func (ss *Sessions) Len() int {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return len(ss.m)
}

func randomToken() string {
	var b [32]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}
