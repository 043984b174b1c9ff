package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bmgate/bmgate/mailmap"
)

// logWatch is the instances' stdout and stderr: it appends to a file and
// tells watchers about lines containing a string.
type logWatch struct {
	mu      sync.Mutex
	path    string
	f       *os.File
	partial []byte
	waiters []*logWaiter
}

type logWaiter struct {
	substr string
	ch     chan string
}

func newLogWatch(path string) (*logWatch, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	return &logWatch{path: path, f: f}, nil
}

func (w *logWatch) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, err := w.f.Write(p); err != nil {
		return 0, err
	}
	w.partial = append(w.partial, p...)
	for {
		i := bytes.IndexByte(w.partial, '\n')
		if i < 0 {
			break
		}
		line := string(w.partial[:i])
		w.partial = w.partial[i+1:]
		kept := w.waiters[:0]
		for _, wt := range w.waiters {
			if strings.Contains(line, wt.substr) {
				wt.ch <- line // buffered, one send per waiter
			} else {
				kept = append(kept, wt)
			}
		}
		clear(w.waiters[len(kept):])
		w.waiters = kept
	}
	return len(p), nil
}

// mark writes a line of the test's own into the log.
func (w *logWatch) mark(s string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.partial) > 0 { // a line cut by SIGKILL
		w.f.WriteString("\n")
		w.partial = nil
	}
	fmt.Fprintf(w.f, "#### %s %s\n", time.Now().Format("15:04:05.000"), s)
}

// watch returns a channel that receives the next line containing substr.
func (w *logWatch) watch(substr string) (<-chan string, func()) {
	wt := &logWaiter{substr: substr, ch: make(chan string, 1)}
	w.mu.Lock()
	w.waiters = append(w.waiters, wt)
	w.mu.Unlock()
	return wt.ch, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		if i := slices.Index(w.waiters, wt); i >= 0 {
			w.waiters = slices.Delete(w.waiters, i, i+1)
		}
	}
}

func (w *logWatch) content() string {
	b, _ := os.ReadFile(w.path)
	return string(b)
}

// crashNode runs one instance's `bmgate serve`, again and again.
type crashNode struct {
	t     *testing.T
	in    *instance
	admin string
	peer  string
	logw  *logWatch

	mu         sync.Mutex
	cmd        *exec.Cmd
	done       chan struct{}
	killed     bool
	starts     int
	unexpected []string // exits the test did not cause
}

var kill9HTTP = &http.Client{Timeout: 2 * time.Second}

func (n *crashNode) start() error {
	args := append([]string{"serve"}, n.in.common()...)
	args = append(args, "--smtp", n.in.smtp, "--imap", n.in.imap, "--p2p", n.in.p2p,
		"--no-bootstrap", "--admin", n.admin, "--peer", n.peer)
	cmd := exec.Command(bmgateBinary(n.t), args...)
	cmd.Stdout, cmd.Stderr = n.logw, n.logw
	n.mu.Lock()
	n.starts++
	gen := n.starts
	n.mu.Unlock()
	n.logw.mark(fmt.Sprintf("start #%d", gen))
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	n.mu.Lock()
	n.cmd, n.done, n.killed = cmd, done, false
	n.mu.Unlock()
	go func() {
		err := cmd.Wait()
		n.mu.Lock()
		if !n.killed {
			n.unexpected = append(n.unexpected, fmt.Sprintf("start #%d exited on its own: %v", gen, err))
		}
		n.mu.Unlock()
		close(done)
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-done:
			return fmt.Errorf("%s exited during start-up", n.in.name)
		default:
		}
		if _, err := n.status(); err == nil {
			if c, err := net.Dial("tcp", n.in.smtp); err == nil {
				c.Close()
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready within 30 s", n.in.name)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill9 SIGKILLs the running process and waits for it to be gone.
func (n *crashNode) kill9(why string) {
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.killed = true
	n.cmd = nil
	n.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-done
	n.logw.mark("SIGKILL: " + why)
}

func (n *crashNode) status() (Status, error) {
	resp, err := kill9HTTP.Get("http://" + n.admin + "/status")
	if err != nil {
		return Status{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return Status{}, fmt.Errorf("status: %s", resp.Status)
	}
	var s Status
	err = json.NewDecoder(resp.Body).Decode(&s)
	return s, err
}

// openStore opens the instance's database the way the subcommands do.
func (n *crashNode) openStore(ctx context.Context) (mailmap.Store, error) {
	key, err := readSecretKey(filepath.Join(n.in.data, "secret.key"))
	if err != nil {
		return nil, err
	}
	dsn := n.in.db
	if dsn == "" {
		dsn = filepath.Join(n.in.data, SQLiteFile)
	}
	return mailmap.Open(ctx, dsn, mailmap.Options{SecretKey: key})
}
