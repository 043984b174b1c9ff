// Command bench measures how fast bmgate catches up an inbound pool: it
// fills a store with N local identities and a pool of M msg objects (a few
// of them to local identities, the rest to strangers, as on the network),
// then times the gateway's inbound processing of the whole pool with
// different numbers of workers (cores) and of instances (processes on one
// database), and prints a table.
//
//	go run ./cmd/bench -identities 10000 -objects 1000 -db 'postgres://…'
//
// Each run starts from the same pool: every object pending, no delivery
// recorded. An instance is a separate process (this program re-executed
// with -child), as a hosted deployment runs them; several instances need
// PostgreSQL. The time of a run includes each instance's start (loading
// and deriving the identities' keys), as a real catch-up after a restart
// does. Only loopback or local databases are touched; nothing goes to the
// network.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/bmgate/bmgate/bmcore/identity"
	"github.com/bmgate/bmgate/bmcore/inventory"
	"github.com/bmgate/bmgate/bmcore/object"
	"github.com/bmgate/bmgate/bmcore/params"
	"github.com/bmgate/bmgate/bmcore/pow"
	"github.com/bmgate/bmgate/bmcore/wire"
	"github.com/bmgate/bmgate/gateway"
	"github.com/bmgate/bmgate/mailmap"
)

// secretKey seals the bench identities' keys; they are throwaway.
var secretKey = bytes.Repeat([]byte{0x42}, 32)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		dsn        = flag.String("db", "", "database: a postgres:// URL, or a SQLite file (default: a new one in a temporary directory)")
		nIDs       = flag.Int("identities", 10000, "local identities")
		nObjs      = flag.Int("objects", 1000, "msg objects in the pool")
		nLocal     = flag.Int("local", 20, "of them, addressed to local identities")
		workers    = flag.String("workers", "1,2", "inbound workers per instance to try, comma-separated")
		instances  = flag.String("instances", "1,2", "instances to try, comma-separated (more than one needs PostgreSQL)")
		child      = flag.Bool("child", false, "run as one instance (internal)")
		childWkrs  = flag.Int("child-workers", 1, "inbound workers of a child instance (internal)")
		reuse      = flag.Bool("reuse", false, "use the pool already in -db instead of filling it")
		ctx, cause = signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	)
	defer cause()
	flag.Parse()
	if *child {
		return runChild(ctx, *dsn, *childWkrs)
	}
	ws, err := ints(*workers)
	if err != nil {
		return fmt.Errorf("-workers: %w", err)
	}
	is, err := ints(*instances)
	if err != nil {
		return fmt.Errorf("-instances: %w", err)
	}
	pg := strings.HasPrefix(*dsn, "postgres://") || strings.HasPrefix(*dsn, "postgresql://")
	if *dsn == "" {
		dir, err := os.MkdirTemp("", "bmgate-bench")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		*dsn = filepath.Join(dir, "bench.db")
	}
	if !*reuse {
		start := time.Now()
		if err := fill(ctx, *dsn, *nIDs, *nObjs, *nLocal); err != nil {
			return fmt.Errorf("fill the store: %w", err)
		}
		fmt.Fprintf(os.Stderr, "filled: %d identities, %d objects (%d local) in %s\n", *nIDs, *nObjs, *nLocal,
			time.Since(start).Round(time.Millisecond))
	}
	backend := "SQLite"
	if pg {
		backend = "PostgreSQL"
	}
	fmt.Printf("%s, %d identities, pool of %d msg objects (%d to local identities), %d CPUs, %s/%s\n\n",
		backend, *nIDs, *nObjs, *nLocal, runtime.NumCPU(), runtime.GOOS, runtime.GOARCH)
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "instances\tworkers each\tcatch-up\tobjects/s\tspeed-up\tshare per instance\t")
	var base time.Duration
	for _, n := range is {
		if n > 1 && !pg {
			fmt.Fprintf(os.Stderr, "skipping %d instances: they need PostgreSQL (-db postgres://…)\n", n)
			continue
		}
		for _, w := range ws {
			d, shares, err := measure(ctx, *dsn, n, w, *nObjs)
			if err != nil {
				return fmt.Errorf("%d instances × %d workers: %w", n, w, err)
			}
			if base == 0 {
				base = d
			}
			fmt.Fprintf(tw, "%d\t%d\t%s\t%.1f\t%.2f×\t%s\t\n", n, w, d.Round(time.Millisecond),
				float64(*nObjs)/d.Seconds(), base.Seconds()/d.Seconds(), shares)
			fmt.Fprintf(os.Stderr, "%d instances × %d workers: %s\n", n, w, d.Round(time.Millisecond))
		}
	}
	return tw.Flush()
}

func ints(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive number", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// fill makes the identities (spread over users of 100 addresses each, as
// on a hosted service) and the pool.
func fill(ctx context.Context, dsn string, nIDs, nObjs, nLocal int) error {
	st, err := mailmap.Open(ctx, dsn, mailmap.Options{SecretKey: secretKey})
	if err != nil {
		return err
	}
	defer st.Close()
	ids := make([]*identity.Identity, 0, nIDs)
	var user mailmap.User
	for i := range nIDs {
		if i%100 == 0 {
			if user, err = st.CreateUser(ctx, fmt.Sprintf("bench%d", i/100), "bench-password"); err != nil {
				return err
			}
		}
		id, err := randomIdentity()
		if err != nil {
			return err
		}
		if _, err := st.AddIdentity(ctx, mailmap.Identity{UserID: user.ID, Address: id.Address.String(),
			Kind: mailmap.KindNormal, SigningKey: id.Signing.Serialize(), EncryptionKey: id.Encryption.Serialize(),
			NonceTrialsPerByte: 1, ExtraBytes: 1}); err != nil {
			return err
		}
		ids = append(ids, id)
	}
	sender, err := randomIdentity()
	if err != nil {
		return err
	}
	strangers := make([]*identity.Identity, 16)
	for i := range strangers {
		if strangers[i], err = randomIdentity(); err != nil {
			return err
		}
	}
	expires := uint64(time.Now().Add(47 * time.Hour).Unix())
	every := max(nObjs/max(nLocal, 1), 1)
	local := 0
	for i := range nObjs {
		to := strangers[i%len(strangers)]
		if local < nLocal && i%every == every/2 && len(ids) > 0 {
			to = ids[(local*7919)%len(ids)]
			local++
		}
		body := fmt.Sprintf("bench message %d\n%s", i, strings.Repeat("Lorem ipsum dolor sit amet. ", 20))
		headless, err := object.BuildMsg(sender, object.PubkeyOf(to), to.Address,
			object.MsgContent{Encoding: 2, Message: object.EncodeSimple(fmt.Sprintf("bench %d", i), body)}, expires, rand.Reader)
		if err != nil {
			return err
		}
		if err := put(ctx, st, headless); err != nil {
			return err
		}
	}
	return nil
}

// randomIdentity makes an identity from two random keys, without
// PyBitmessage's search for a short address, which would make filling a
// store of 20,000 identities take many minutes and changes nothing here.
func randomIdentity() (*identity.Identity, error) {
	var sign, enc [32]byte
	for {
		if _, err := rand.Read(sign[:]); err != nil {
			return nil, err
		}
		if _, err := rand.Read(enc[:]); err != nil {
			return nil, err
		}
		id, err := identity.FromKeys(4, 1, sign[:], enc[:])
		if err == nil {
			return id, nil
		}
	}
}

// put does the proof of work at the test network's minimum and stores the
// object as the node would.
func put(ctx context.Context, st mailmap.Store, headless []byte) error {
	ttl := int64(47 * time.Hour / time.Second)
	target := pow.Target(uint64(len(headless)+8), ttl+pow.SolveMargin, params.Testnet.NonceTrialsPerByte, params.Testnet.ExtraBytes)
	raw, err := pow.SolveObject(ctx, headless, target, pow.Options{})
	if err != nil {
		return err
	}
	o, err := wire.DecodeObject(raw)
	if err != nil {
		return err
	}
	_, err = st.Put(ctx, inventory.StoredObject{Hash: wire.ComputeInvHash(raw), Type: o.Type, Version: o.Version,
		Stream: o.Stream, Expires: time.Unix(int64(o.ExpiresTime), 0), Raw: raw})
	return err
}

// reset makes every object of the pool pending again and forgets the
// deliveries, so each run does the same work.
func reset(ctx context.Context, dsn string) error {
	driver, source := "sqlite", "file:"+dsn+"?_pragma=busy_timeout(10000)"
	if strings.HasPrefix(dsn, "postgres") {
		driver, source = "pgx", dsn
	}
	db, err := sql.Open(driver, source)
	if err != nil {
		return err
	}
	defer db.Close()
	for _, q := range []string{
		`UPDATE inventory SET processed = FALSE, processed_at = 0, lease_owner = '', lease_until = 0, attempts = 0, retry_at = 0`,
		`DELETE FROM deliveries`,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("reset: %w", err)
		}
	}
	return nil
}

// measure runs n instances with w workers each until the pool is
// processed and returns the wall time and each instance's share.
func measure(ctx context.Context, dsn string, n, w, total int) (time.Duration, string, error) {
	if err := reset(ctx, dsn); err != nil {
		return 0, "", err
	}
	st, err := mailmap.Open(ctx, dsn, mailmap.Options{SecretKey: secretKey})
	if err != nil {
		return 0, "", err
	}
	defer st.Close()
	self, err := os.Executable()
	if err != nil {
		return 0, "", err
	}
	type proc struct {
		cmd *exec.Cmd
		out *bytes.Buffer
	}
	procs := make([]proc, n)
	start := time.Now()
	for i := range procs {
		var out bytes.Buffer
		cmd := exec.CommandContext(ctx, self, "-child", "-db", dsn, "-child-workers", strconv.Itoa(w))
		cmd.Stdout, cmd.Stderr = &out, os.Stderr
		if err := cmd.Start(); err != nil {
			return 0, "", err
		}
		procs[i] = proc{cmd, &out}
	}
	stop := func() {
		for _, p := range procs {
			p.cmd.Process.Signal(syscall.SIGTERM)
		}
		for _, p := range procs {
			p.cmd.Wait()
		}
	}
	var took time.Duration
	for {
		b, err := st.InboundBacklog(ctx, time.Now(), time.Hour)
		if err != nil {
			stop()
			return 0, "", err
		}
		if b.Pending == 0 {
			took = time.Since(start)
			break
		}
		if ctx.Err() != nil {
			stop()
			return 0, "", ctx.Err()
		}
		time.Sleep(20 * time.Millisecond) // a bench's poll, not a test's wait
	}
	stop()
	var shares []string
	sum := 0
	for _, p := range procs {
		k, err := strconv.Atoi(strings.TrimSpace(p.out.String()))
		if err != nil {
			return 0, "", fmt.Errorf("instance output %q", p.out.String())
		}
		sum += k
		shares = append(shares, strconv.Itoa(k))
	}
	if sum < total {
		return 0, "", fmt.Errorf("instances processed %d objects of %d", sum, total)
	}
	return took, strings.Join(shares, " + "), nil
}

// runChild is one instance: a gateway over the database that processes
// inbound objects until it is stopped, then prints how many it did.
func runChild(ctx context.Context, dsn string, workers int) error {
	st, err := mailmap.Open(ctx, dsn, mailmap.Options{SecretKey: secretKey})
	if err != nil {
		return err
	}
	defer st.Close()
	g, err := gateway.New(gateway.Config{Store: st, Publisher: discard{}, Network: params.Testnet, Domain: "bench.invalid",
		InboundWorkers: workers, PollInterval: 50 * time.Millisecond, MaintenanceInterval: time.Hour,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		return err
	}
	err = g.Run(ctx)
	w := bufio.NewWriter(os.Stdout)
	fmt.Fprintln(w, g.Stats().Objects)
	if ferr := w.Flush(); ferr != nil {
		return ferr
	}
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// discard is a publisher that drops what the gateway publishes (acks).
type discard struct{}

func (discard) Publish(_ context.Context, obj []byte) (wire.InvHash, error) {
	return wire.ComputeInvHash(obj), nil
}
