// Package convstore keeps the server-side conversations of MDSA's tenants:
// an ordered history of chat messages per conversation, owned by exactly one
// tenant.
//
// OpenSQLite stores them in an embedded SQLite database
// (github.com/ncruces/go-sqlite3, pure Go, no cgo); OpenPostgres in a
// PostgreSQL database (github.com/jackc/pgx/v5), which several replicas of
// MDSA can share. Both behave alike. Every query is
// parameterised, and every query made for a tenant is scoped by tenant in its
// WHERE clause (only Sweep, which expires all tenants alike, is not): a
// tenant can neither read, change, list nor delete another tenant's
// conversations, and asking for one reads exactly like asking for an id that
// does not exist (ErrNotFound).
//
// Bounds (Limits) cap how many conversations a tenant keeps, how many
// messages and bytes one conversation holds, and how long an idle
// conversation lives.
package convstore

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/mdsa-go/mdsa/internal/sqlitedb"
	"github.com/mdsa-go/mdsa/sdk/go/abi"
)

// ErrNotFound is returned when the tenant has no conversation with the given
// id: it never existed, was deleted or expired, the id is malformed, or the
// id belongs to another tenant (which is deliberately not told apart).
var ErrNotFound = errors.New("convstore: conversation not found")

// ErrFull is returned when an operation would exceed a limit: the number of
// conversations of a tenant (Create), or the number of messages or bytes of
// a conversation (Append). Nothing is stored when it is returned.
var ErrFull = errors.New("convstore: limit exceeded")

// ErrInvalid is returned for malformed input other than a conversation id:
// an empty or over-long tenant, a message with an unknown role, content that
// is not valid UTF-8 or holds a NUL byte, or an Append with no messages.
var ErrInvalid = errors.New("convstore: invalid input")

// IDPrefix starts every conversation id; 24 lowercase hex digits follow.
const IDPrefix = "conv_"

// MaxTenantLen is the longest tenant name accepted, in bytes.
const MaxTenantLen = 256

// DefaultListLimit is the page size List uses when asked for less than 1.
const DefaultListLimit = 20

// MaxListLimit is the largest page List returns; larger limits are capped.
const MaxListLimit = 100

// Limits bounds what a Store keeps. A zero field means "no limit".
type Limits struct {
	// MaxPerTenant is the most conversations one tenant may keep at once
	// (Create returns ErrFull beyond it). Expired conversations do not count.
	MaxPerTenant int
	// MaxMessages is the most messages one conversation may hold.
	MaxMessages int
	// MaxBytes is the most bytes of message content (UTF-8, summed over all
	// messages) one conversation may hold.
	MaxBytes int64
	// TTL is how long a conversation lives after its last update (Create or
	// Append). Expired conversations read as absent at once and are deleted
	// lazily when touched, and in bulk by Sweep.
	TTL time.Duration
}

// Summary describes a conversation without its messages.
type Summary struct {
	// ID is the conversation id, IDPrefix followed by 24 hex digits.
	ID string `json:"id"`
	// Created is when the conversation was created.
	Created time.Time `json:"created"`
	// Updated is when messages were last appended (Created if never).
	Updated time.Time `json:"updated"`
	// Messages is the number of messages held.
	Messages int `json:"messages"`
	// Bytes is the total size of the messages' content, in bytes.
	Bytes int64 `json:"bytes"`
}

// Conversation is a conversation with its messages, oldest first.
type Conversation struct {
	Summary
	// History holds the messages in the order they were appended; never nil.
	History []abi.Message `json:"messages"`
}

// Store keeps conversations, safe for concurrent use. Every method takes the
// tenant that owns the conversations it touches and never sees another
// tenant's.
type Store interface {
	// Create starts a new empty conversation for tenant, with a random id.
	// It returns ErrFull when the tenant already keeps Limits.MaxPerTenant
	// conversations.
	Create(ctx context.Context, tenant string) (Summary, error)
	// Get returns the conversation id of tenant with all its messages, or
	// ErrNotFound (for unknown, expired, malformed or another tenant's ids).
	Get(ctx context.Context, tenant, id string) (Conversation, error)
	// Append adds msgs, in order, to the end of the conversation, in one
	// transaction: either all are stored or none. It returns ErrFull (and
	// stores nothing) when Limits.MaxMessages or Limits.MaxBytes would be
	// exceeded, ErrNotFound as Get does, and ErrInvalid for bad messages.
	Append(ctx context.Context, tenant, id string, msgs ...abi.Message) (Summary, error)
	// List returns the tenant's conversations, most recently updated first,
	// at most limit of them (below 1: DefaultListLimit; capped at
	// MaxListLimit). before, when not empty, is the last id of the previous
	// page: the page starts after it. An unknown before gives ErrNotFound.
	List(ctx context.Context, tenant string, limit int, before string) ([]Summary, error)
	// Delete removes the conversation and its messages, or returns
	// ErrNotFound.
	Delete(ctx context.Context, tenant, id string) error
	// Sweep deletes every expired conversation, of all tenants, and returns
	// how many it deleted. It does nothing without a TTL.
	Sweep(ctx context.Context) (int, error)
	// Close releases the database. The Store must not be used afterwards.
	Close() error
}

// Option configures OpenSQLite and OpenPostgres.
type Option func(*options)

type options struct {
	now func() time.Time
}

// WithClock replaces time.Now as the source of time for Created, Updated and
// expiry; meant for tests.
func WithClock(now func() time.Time) Option {
	return func(o *options) {
		if now != nil {
			o.now = now
		}
	}
}

// newOptions applies opts to the defaults.
func newOptions(opts []Option) options {
	o := options{now: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// checkLimits refuses negative limits.
func checkLimits(l Limits) error {
	if l.MaxPerTenant < 0 || l.MaxMessages < 0 || l.MaxBytes < 0 || l.TTL < 0 {
		return fmt.Errorf("convstore: open: negative limit in %+v", l)
	}
	return nil
}

// expiryCutoff returns the Updated time, in Unix nanoseconds, at or before
// which a conversation has expired at now: math.MinInt64 without a TTL.
func expiryCutoff(l Limits, now int64) int64 {
	if l.TTL <= 0 {
		return math.MinInt64
	}
	return now - int64(l.TTL)
}

func newID() (string, error) {
	id, err := sqlitedb.NewID(IDPrefix)
	if err != nil {
		return "", fmt.Errorf("convstore: %w", err)
	}
	return id, nil
}

// validID reports whether id has the form of a conversation id: IDPrefix and
// 24 lowercase hex digits.
func validID(id string) bool { return sqlitedb.ValidID(id, IDPrefix) }

// checkTenant validates a tenant name.
func checkTenant(tenant string) error {
	if err := sqlitedb.CheckTenant(tenant, MaxTenantLen); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return nil
}

// checkIDArgs validates the tenant and id of a call: a bad tenant is
// ErrInvalid, a malformed id ErrNotFound.
func checkIDArgs(tenant, id string) error {
	if err := checkTenant(tenant); err != nil {
		return err
	}
	if !validID(id) {
		return ErrNotFound
	}
	return nil
}

// checkMessages validates msgs for Append and returns their content size.
func checkMessages(msgs []abi.Message) (int64, error) {
	if len(msgs) == 0 {
		return 0, fmt.Errorf("%w: no messages", ErrInvalid)
	}
	var n int64
	for i, m := range msgs {
		switch m.Role {
		case abi.RoleSystem, abi.RoleUser, abi.RoleAssistant:
		default:
			return 0, fmt.Errorf("%w: message %d: role %q is not system, user or assistant", ErrInvalid, i, m.Role)
		}
		if !utf8.ValidString(m.Content) {
			return 0, fmt.Errorf("%w: message %d: content is not valid UTF-8", ErrInvalid, i)
		}
		if strings.IndexByte(m.Content, 0) >= 0 {
			return 0, fmt.Errorf("%w: message %d: content holds a NUL byte", ErrInvalid, i)
		}
		n += int64(len(m.Content))
	}
	return n, nil
}
