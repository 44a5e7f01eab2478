// Package download fetches large files, such as GGUF model weights, over
// HTTP(S) into place: resumable, verified, atomic, and safe when several
// fetches of the same file run at once.
//
// A fetch of DEST writes DEST.partial in the same directory, with the
// server's validators (ETag, Last-Modified) saved beside it in
// DEST.partial.meta. An interrupted fetch (network error, timeout, cancelled
// context, killed process) leaves the partial file for the next fetch, which
// asks for the rest with an HTTP Range request guarded by If-Range, so a file
// that changed on the server is downloaded afresh rather than spliced. The
// SHA-256 is computed while writing (the kept prefix is re-hashed on resume);
// at the end the size and checksum are verified, the file is synced and
// renamed to DEST. A mismatch deletes the partial file. DEST.lock (an OS
// advisory lock) keeps a second fetch of DEST waiting until the first is done.
package download

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// File name suffixes of the files a fetch of DEST keeps next to it.
const (
	// PartialSuffix: DEST.partial holds the bytes received so far.
	PartialSuffix = ".partial"
	// MetaSuffix: DEST.partial.meta records the source and its validators.
	MetaSuffix = ".partial.meta"
	// LockSuffix: DEST.lock is locked while a fetch of DEST runs.
	LockSuffix = ".lock"
)

// Defaults used for zero Options fields.
const (
	DefaultAttempts         = 5
	DefaultBackoff          = time.Second
	DefaultMaxBackoff       = 30 * time.Second
	DefaultStallTimeout     = 60 * time.Second
	DefaultProgressInterval = 250 * time.Millisecond
	DefaultUserAgent        = "mdsa-download/1"
)

// maxTotalAttempts bounds attempts even when each one makes progress.
const maxTotalAttempts = 100

// bufSize is the read buffer: large enough that syscalls and hashing, not
// per-call overhead, dominate.
const bufSize = 1 << 20

// Request says what to fetch and where to put it.
type Request struct {
	// URL is the http(s) address of the file. Redirects are followed.
	URL string
	// Dest is the final path; missing directories are created.
	Dest string
	// SHA256 is the expected checksum in hex; "" means unknown (the computed
	// sum is returned in Result.SHA256 for the caller to record).
	SHA256 string
	// Size is the expected length in bytes; 0 means unknown.
	Size int64
	// Progress, when set, is called from Fetch's goroutine at most every
	// Options.ProgressInterval while bytes arrive, and once at the end.
	Progress func(Progress)
}

// Progress is a snapshot of a running fetch.
type Progress struct {
	// Bytes is how much of the file is on disk, resumed prefix included.
	Bytes int64
	// Total is the expected size, -1 while unknown.
	Total int64
	// Resumed is the part of Bytes kept from an earlier Fetch's partial file.
	Resumed int64
}

// Options tune a fetch. The zero value is usable.
type Options struct {
	// Client makes the requests; nil means a client with Go's default
	// transport (proxy settings from the environment, 10 redirects).
	Client *http.Client
	// Token is sent as "Authorization: Bearer TOKEN" (e.g. a Hugging Face
	// token from HF_TOKEN; see TokenFromEnv). Go's client drops it on a
	// redirect to another domain that is not a subdomain of the first.
	Token string
	// UserAgent defaults to DefaultUserAgent.
	UserAgent string
	// Attempts is the most consecutive attempts that make no progress (5xx,
	// 429, network errors, stalls) before Fetch gives up; 0 means
	// DefaultAttempts, 1 disables retries. An attempt that received bytes
	// resets the count (at most 100 attempts in all).
	Attempts int
	// Backoff is the first wait between attempts, doubling up to
	// MaxBackoff; a server's Retry-After wins, capped at MaxBackoff.
	Backoff, MaxBackoff time.Duration
	// StallTimeout aborts an attempt when neither response headers nor body
	// bytes arrive for this long (the attempt is then retried).
	StallTimeout time.Duration
	// ProgressInterval throttles Request.Progress.
	ProgressInterval time.Duration
	// Logger receives retries and restarts; nil discards them.
	Logger *slog.Logger
}

// Result describes the file now at Dest.
type Result struct {
	// Path is Request.Dest.
	Path string
	// SHA256 is the file's checksum in lower-case hex.
	SHA256 string
	// Bytes is the file's size.
	Bytes int64
	// Resumed is true when the file continues bytes from an earlier,
	// interrupted attempt (this call's or a previous one's).
	Resumed bool
	// AlreadyPresent is true when Dest already existed and matched the
	// request (its SHA256 and Size, where given), so nothing was downloaded.
	AlreadyPresent bool
	// Attempts is how many HTTP requests the download took (0 if present).
	Attempts int
}

// PartialPath returns the partial-download file of dest.
func PartialPath(dest string) string { return dest + PartialSuffix }

// Fetch downloads req.URL to req.Dest (see the package doc). When Dest
// already exists and matches req.SHA256 and req.Size (those given), it is
// hashed and kept; otherwise it is replaced. Errors are *StatusError for
// HTTP failures, *MismatchError for a wrong size or checksum, or wrap
// ctx.Err() when ctx ends (the partial file is then kept for a resume).
func Fetch(ctx context.Context, req Request, opts Options) (Result, error) {
	want := strings.ToLower(strings.TrimSpace(req.SHA256))
	if err := req.check(want); err != nil {
		return Result{}, err
	}
	o := opts.withDefaults()
	if err := os.MkdirAll(filepath.Dir(req.Dest), 0o755); err != nil {
		return Result{}, fmt.Errorf("download to %s: %w", req.Dest, err)
	}
	lk, err := acquireLock(ctx, req.Dest+LockSuffix, true)
	if err != nil {
		return Result{}, fmt.Errorf("download to %s: %w", req.Dest, err)
	}
	defer lk.release()

	f := &fetch{req: req, o: o, want: want, buf: make([]byte, bufSize), total: -1}
	if res, ok, err := f.existing(ctx); err != nil || ok {
		return res, err
	}
	return f.run(ctx)
}

func (r Request) check(want string) error {
	u, err := url.Parse(r.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("download: URL %q: want an http or https address", r.URL)
	}
	if r.Dest == "" {
		return errors.New("download: no destination path")
	}
	if want != "" && !isSHA256Hex(want) {
		return fmt.Errorf("download to %s: sha256 %q: want 64 hex digits", r.Dest, r.SHA256)
	}
	if r.Size < 0 {
		return fmt.Errorf("download to %s: negative size %d", r.Dest, r.Size)
	}
	return nil
}

func isSHA256Hex(s string) bool {
	if len(s) != 2*sha256.Size {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

func (o Options) withDefaults() Options {
	if o.Client == nil {
		o.Client = &http.Client{}
	}
	if o.UserAgent == "" {
		o.UserAgent = DefaultUserAgent
	}
	if o.Attempts <= 0 {
		o.Attempts = DefaultAttempts
	}
	if o.Backoff <= 0 {
		o.Backoff = DefaultBackoff
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = DefaultMaxBackoff
	}
	if o.StallTimeout <= 0 {
		o.StallTimeout = DefaultStallTimeout
	}
	if o.ProgressInterval <= 0 {
		o.ProgressInterval = DefaultProgressInterval
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// meta is what DEST.partial.meta records about the partial file's source.
type meta struct {
	URL          string `json:"url"`
	ETag         string `json:"etag,omitempty"`
	LastModified string `json:"last_modified,omitempty"`
	Total        int64  `json:"total"`            // -1 unknown
	SHA256       string `json:"sha256,omitempty"` // what the caller expected
}

// validator is the If-Range value: a strong ETag, else Last-Modified.
func (m meta) validator() string {
	if e := strongETag(m.ETag); e != "" {
		return e
	}
	return m.LastModified
}

// fetch is the state of one Fetch call.
type fetch struct {
	req  Request
	o    Options
	want string
	buf  []byte

	pf          *os.File  // the partial file
	h           hash.Hash // sha256 of pf[0:off]
	off         int64     // bytes in pf
	total       int64     // size the server announced, -1 unknown
	resumedFrom int64     // bytes kept from an earlier Fetch
	resumed     bool      // a 206 continued earlier bytes
	meta        meta
	lastProg    time.Time
}

func (f *fetch) partial() string  { return f.req.Dest + PartialSuffix }
func (f *fetch) metaPath() string { return f.req.Dest + MetaSuffix }

// existing accepts a Dest that is already there and matches the request.
func (f *fetch) existing(ctx context.Context) (Result, bool, error) {
	st, err := os.Stat(f.req.Dest)
	if errors.Is(err, fs.ErrNotExist) {
		return Result{}, false, nil
	}
	if err != nil {
		return Result{}, false, fmt.Errorf("download to %s: %w", f.req.Dest, err)
	}
	if !st.Mode().IsRegular() {
		return Result{}, false, fmt.Errorf("download to %s: exists and is not a regular file", f.req.Dest)
	}
	if f.req.Size > 0 && st.Size() != f.req.Size {
		f.o.Logger.Warn("existing file has the wrong size; downloading it again",
			"path", f.req.Dest, "size", st.Size(), "want", f.req.Size)
		return Result{}, false, nil
	}
	sum, n, err := HashFile(ctx, f.req.Dest)
	if err != nil {
		return Result{}, false, fmt.Errorf("download to %s: %w", f.req.Dest, err)
	}
	if f.want != "" && sum != f.want {
		f.o.Logger.Warn("existing file has the wrong sha256; downloading it again",
			"path", f.req.Dest, "sha256", sum, "want", f.want)
		return Result{}, false, nil
	}
	return Result{Path: f.req.Dest, SHA256: sum, Bytes: n, AlreadyPresent: true}, true, nil
}

func (f *fetch) run(ctx context.Context) (Result, error) {
	pf, err := os.OpenFile(f.partial(), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return Result{}, fmt.Errorf("download to %s: %w", f.req.Dest, err)
	}
	f.pf = pf
	defer func() {
		if f.pf != nil {
			f.pf.Close()
		}
	}()
	f.h = sha256.New()
	if err := f.resumeOrReset(ctx); err != nil {
		if ctx.Err() != nil {
			return Result{}, f.interrupted(ctx.Err())
		}
		return Result{}, f.fail(err)
	}
	f.progress(true)

	fails, attempts := 0, 0
	for {
		attempts++
		before := f.off
		err := f.attempt(ctx)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return Result{}, f.interrupted(ctx.Err())
		}
		if attempts >= maxTotalAttempts {
			return Result{}, f.fail(fmt.Errorf("%w (gave up after %d attempts)", err, attempts))
		}
		if errors.Is(err, errRestart) {
			continue
		}
		var r *retryable
		if !errors.As(err, &r) {
			return Result{}, f.fail(err)
		}
		if f.off > before {
			fails = 0
		}
		fails++
		if fails >= f.o.Attempts {
			return Result{}, f.fail(fmt.Errorf("%w (gave up after %d attempts)", r.err, attempts))
		}
		wait := f.backoff(fails, r.after)
		f.o.Logger.Warn("download attempt failed; retrying", "url", f.req.URL, "attempt", attempts,
			"bytes", f.off, "wait", wait, "err", r.err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return Result{}, f.interrupted(ctx.Err())
		case <-t.C:
		}
	}
	res, err := f.finish()
	res.Attempts = attempts
	return res, err
}

func (f *fetch) backoff(fails int, after time.Duration) time.Duration {
	if after > 0 {
		return min(after, f.o.MaxBackoff)
	}
	d := f.o.Backoff
	for i := 1; i < fails && d < f.o.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, f.o.MaxBackoff)
	return d + rand.N(d/4+1) // jitter, so that many clients do not retry in step
}

// resumeOrReset keeps the partial file if it can be continued safely and
// re-hashes it; otherwise it empties it.
func (f *fetch) resumeOrReset(ctx context.Context) error {
	st, err := f.pf.Stat()
	if err != nil {
		return err
	}
	n := st.Size()
	if n == 0 {
		return f.reset()
	}
	m, merr := readMeta(f.metaPath())
	why := ""
	switch {
	case merr != nil && f.want == "":
		why = "no saved validators and no checksum to verify a resumed file"
	case merr == nil && m.URL != f.req.URL:
		why = "it came from another URL"
	case merr == nil && m.SHA256 != "" && f.want != "" && m.SHA256 != f.want:
		why = "it was for another checksum"
	case merr == nil && m.validator() == "" && f.want == "":
		why = "the server gave no validator and there is no checksum to verify a resumed file"
	case merr == nil && m.Total >= 0 && n > m.Total, f.req.Size > 0 && n > f.req.Size:
		why = "it is longer than the file"
	}
	if why != "" {
		f.o.Logger.Info("discarding partial download", "path", f.partial(), "bytes", n, "reason", why)
		return f.reset()
	}
	if merr != nil {
		m = meta{URL: f.req.URL, Total: -1, SHA256: f.want}
	}
	// Set off first: a failed or cancelled re-hash must keep the file.
	f.meta, f.off, f.resumedFrom = m, n, n
	if _, err := io.CopyBuffer(f.h, &ctxReader{ctx: ctx, r: io.NewSectionReader(f.pf, 0, n)}, f.buf); err != nil {
		return fmt.Errorf("re-hash %s: %w", f.partial(), err)
	}
	f.o.Logger.Info("resuming partial download", "path", f.partial(), "bytes", n)
	return nil
}

// reset empties the partial file and forgets its source.
func (f *fetch) reset() error {
	if err := f.pf.Truncate(0); err != nil {
		return fmt.Errorf("truncate %s: %w", f.partial(), err)
	}
	f.h.Reset()
	f.off, f.resumedFrom, f.total, f.resumed = 0, 0, -1, false
	f.meta = meta{}
	if err := os.Remove(f.metaPath()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

var errStalled = errors.New("stalled")

// attempt makes one request and appends what it receives to the partial
// file. nil means the file is complete.
func (f *fetch) attempt(ctx context.Context) error {
	actx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stall := time.AfterFunc(f.o.StallTimeout, func() { cancel(errStalled) })
	defer stall.Stop()

	hreq, err := http.NewRequestWithContext(actx, http.MethodGet, f.req.URL, nil)
	if err != nil {
		return err
	}
	hreq.Header.Set("User-Agent", f.o.UserAgent)
	// No transparent gzip: byte counts and ranges must be those of the file.
	hreq.Header.Set("Accept-Encoding", "identity")
	if f.o.Token != "" {
		hreq.Header.Set("Authorization", "Bearer "+f.o.Token)
	}
	if f.off > 0 {
		hreq.Header.Set("Range", "bytes="+strconv.FormatInt(f.off, 10)+"-")
		if v := f.meta.validator(); v != "" {
			hreq.Header.Set("If-Range", v)
		}
	}
	resp, err := f.o.Client.Do(hreq)
	if err != nil {
		return f.transportErr(actx, err)
	}
	defer resp.Body.Close()

	switch resp.StatusCode {
	case http.StatusOK:
		if f.off > 0 {
			f.o.Logger.Info("server sent the whole file (Range ignored or file changed); restarting",
				"url", f.req.URL, "discarded", f.off)
			if err := f.reset(); err != nil {
				return err
			}
		}
		f.total = resp.ContentLength
		if err := f.checkTotal(); err != nil {
			return err
		}
		f.meta = meta{URL: f.req.URL, ETag: resp.Header.Get("ETag"),
			LastModified: resp.Header.Get("Last-Modified"), Total: f.total, SHA256: f.want}
		if err := writeMeta(f.metaPath(), f.meta); err != nil {
			f.o.Logger.Warn("cannot save download validators; an interrupted download will restart", "err", err)
		}
	case http.StatusPartialContent:
		cr, err := parseContentRange(resp.Header.Get("Content-Range"))
		why := ""
		switch {
		case err != nil:
			why = err.Error()
		case cr.start != f.off:
			why = fmt.Sprintf("range starts at %d, want %d", cr.start, f.off)
		case f.changed(resp):
			why = "the file changed on the server"
		case cr.total >= 0 && f.meta.Total >= 0 && cr.total != f.meta.Total:
			why = fmt.Sprintf("the file is now %d bytes, was %d", cr.total, f.meta.Total)
		}
		if why != "" {
			f.o.Logger.Info("cannot continue partial download; restarting", "url", f.req.URL, "reason", why)
			if err := f.reset(); err != nil {
				return err
			}
			return errRestart
		}
		f.total = cr.total
		if err := f.checkTotal(); err != nil {
			return err
		}
		f.resumed = f.resumed || f.off > 0
	case http.StatusRequestedRangeNotSatisfiable:
		// The partial file may already be whole (stopped before the rename).
		if cr, err := parseContentRange(resp.Header.Get("Content-Range")); err == nil && f.off > 0 && cr.total == f.off {
			f.total, f.resumed = cr.total, true
			return nil
		}
		if err := f.reset(); err != nil {
			return err
		}
		return errRestart
	default:
		se := &StatusError{URL: f.req.URL, Code: resp.StatusCode, Status: resp.Status, TokenSent: f.o.Token != "",
			RetryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())}
		if se.Temporary() {
			return &retryable{err: se, after: se.RetryAfter}
		}
		return se
	}
	return f.copyBody(actx, resp.Body, stall)
}

// copyBody appends body to the partial file, hashing as it goes.
func (f *fetch) copyBody(actx context.Context, body io.Reader, stall *time.Timer) error {
	if _, err := f.pf.Seek(f.off, io.SeekStart); err != nil {
		return fmt.Errorf("seek %s: %w", f.partial(), err)
	}
	limit := f.expected()
	for {
		n, rerr := body.Read(f.buf)
		if n > 0 {
			stall.Reset(f.o.StallTimeout)
			if limit >= 0 && f.off+int64(n) > limit {
				f.discard()
				return &MismatchError{URL: f.req.URL, Dest: f.req.Dest, What: "size",
					Expected: strconv.FormatInt(limit, 10), Got: "more (the server sent too much)"}
			}
			if _, err := f.pf.Write(f.buf[:n]); err != nil {
				return fmt.Errorf("write %s: %w", f.partial(), err)
			}
			f.h.Write(f.buf[:n])
			f.off += int64(n)
			f.progress(false)
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return f.transportErr(actx, rerr)
		}
	}
	if f.total >= 0 && f.off < f.total {
		return &retryable{err: fmt.Errorf("GET %s: connection closed after %d of %d bytes", f.req.URL, f.off, f.total)}
	}
	return nil
}

// changed reports whether a 206 response's validators differ from the
// saved ones (for servers that honour Range but not If-Range).
func (f *fetch) changed(resp *http.Response) bool {
	if e := resp.Header.Get("ETag"); e != "" && f.meta.ETag != "" {
		return e != f.meta.ETag
	}
	if lm := resp.Header.Get("Last-Modified"); lm != "" && f.meta.LastModified != "" {
		return lm != f.meta.LastModified
	}
	return false
}

// expected is the size the file must have: the caller's, else the
// server's, else -1.
func (f *fetch) expected() int64 {
	if f.req.Size > 0 {
		return f.req.Size
	}
	return f.total
}

// checkTotal rejects a server-announced size that contradicts Request.Size.
func (f *fetch) checkTotal() error {
	if f.req.Size > 0 && f.total >= 0 && f.total != f.req.Size {
		f.discard()
		return &MismatchError{URL: f.req.URL, Dest: f.req.Dest, What: "size",
			Expected: strconv.FormatInt(f.req.Size, 10), Got: strconv.FormatInt(f.total, 10) + " (announced by the server)"}
	}
	return nil
}

func (f *fetch) transportErr(actx context.Context, err error) error {
	if errors.Is(context.Cause(actx), errStalled) {
		return &retryable{err: fmt.Errorf("GET %s: no data for %s: %w", f.req.URL, f.o.StallTimeout, errStalled)}
	}
	var cv *tls.CertificateVerificationError
	if errors.As(err, &cv) || strings.Contains(err.Error(), "stopped after") {
		return err // certificate or redirect-loop problems do not go away
	}
	if unreachable(err) {
		return err
	}
	return &retryable{err: err}
}

// unreachable reports errors that retrying within seconds cannot fix: a
// host name the resolver says does not exist (no network, as often as a
// typo), or no route to the network. Retrying them took 17 s before failing.
func unreachable(err error) bool {
	var dns *net.DNSError
	if errors.As(err, &dns) && dns.IsNotFound {
		return true
	}
	return errors.Is(err, syscall.ENETUNREACH) || errors.Is(err, syscall.EHOSTUNREACH)
}

func (f *fetch) progress(force bool) {
	if f.req.Progress == nil {
		return
	}
	now := time.Now()
	if !force && now.Sub(f.lastProg) < f.o.ProgressInterval {
		return
	}
	f.lastProg = now
	f.req.Progress(Progress{Bytes: f.off, Total: f.expected(), Resumed: f.resumedFrom})
}

// finish verifies the complete partial file and moves it to Dest.
func (f *fetch) finish() (Result, error) {
	if want := f.expected(); want >= 0 && f.off != want {
		f.discard()
		return Result{}, &MismatchError{URL: f.req.URL, Dest: f.req.Dest,
			What: "size", Expected: strconv.FormatInt(want, 10), Got: strconv.FormatInt(f.off, 10)}
	}
	sum := hex.EncodeToString(f.h.Sum(nil))
	if f.want != "" && sum != f.want {
		f.discard()
		return Result{}, &MismatchError{URL: f.req.URL, Dest: f.req.Dest, What: "sha256", Expected: f.want, Got: sum}
	}
	if err := f.pf.Sync(); err != nil {
		return Result{}, fmt.Errorf("download to %s: sync %s: %w", f.req.Dest, f.partial(), err)
	}
	err := f.pf.Close()
	f.pf = nil
	if err != nil {
		return Result{}, fmt.Errorf("download to %s: close %s: %w", f.req.Dest, f.partial(), err)
	}
	if err := os.Rename(f.partial(), f.req.Dest); err != nil {
		return Result{}, fmt.Errorf("download to %s: %w", f.req.Dest, err)
	}
	syncDir(filepath.Dir(f.req.Dest))
	os.Remove(f.metaPath())
	f.progress(true)
	return Result{Path: f.req.Dest, SHA256: sum, Bytes: f.off, Resumed: f.resumed}, nil
}

// discard deletes the partial file and its metadata.
func (f *fetch) discard() {
	if f.pf != nil {
		f.pf.Close()
		f.pf = nil
	}
	os.Remove(f.partial())
	os.Remove(f.metaPath())
	f.off, f.resumedFrom, f.resumed = 0, 0, false
}

// fail ends the fetch with err, keeping a non-empty partial file.
func (f *fetch) fail(err error) error {
	if f.pf != nil && f.off == 0 {
		f.discard()
	}
	var me *MismatchError
	if errors.As(err, &me) {
		return err // already says where
	}
	return fmt.Errorf("download to %s: %w", f.req.Dest, err)
}

// interrupted ends the fetch because ctx ended, keeping the partial file.
func (f *fetch) interrupted(err error) error {
	if f.pf == nil || f.off == 0 {
		f.discard()
		return fmt.Errorf("download to %s: %w", f.req.Dest, err)
	}
	f.pf.Sync()
	return fmt.Errorf("download to %s stopped after %d bytes (kept in %s; run again to resume): %w",
		f.req.Dest, f.off, f.partial(), err)
}

func readMeta(path string) (meta, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return meta{}, err
	}
	m := meta{Total: -1}
	if err := json.Unmarshal(b, &m); err != nil {
		return meta{}, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

func writeMeta(path string, m meta) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// syncDir makes a rename in dir durable; failures (e.g. on Windows, where
// directories cannot be synced) are ignored.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// HashFile returns the SHA-256 (lower-case hex) and size of the file at
// path, stopping early if ctx ends.
func HashFile(ctx context.Context, path string) (string, int64, error) {
	fh, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer fh.Close()
	h := sha256.New()
	n, err := io.CopyBuffer(h, &ctxReader{ctx: ctx, r: fh}, make([]byte, bufSize))
	if err != nil {
		return "", 0, fmt.Errorf("hash %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// ctxReader stops reading once ctx ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// Remove deletes dest and its partial download. It fails with ErrBusy while
// a Fetch of dest runs. It returns the paths it removed.
func Remove(ctx context.Context, dest string) ([]string, error) {
	if _, err := os.Stat(filepath.Dir(dest)); errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	lk, err := acquireLock(ctx, dest+LockSuffix, false)
	if err != nil {
		return nil, fmt.Errorf("remove %s: %w", dest, err)
	}
	defer lk.release()
	var removed []string
	for _, p := range []string{dest, dest + PartialSuffix, dest + MetaSuffix} {
		err := os.Remove(p)
		switch {
		case err == nil:
			removed = append(removed, p)
		case !errors.Is(err, fs.ErrNotExist):
			return removed, fmt.Errorf("remove %s: %w", p, err)
		}
	}
	return removed, nil
}
