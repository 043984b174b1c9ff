package imapd

import (
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
)

// CommandObserver is told of each command a session handled: its name
// (LOGIN, SELECT, FETCH, …: a fixed set), how long it took and its error
// (nil: OK). It must be safe for concurrent use.
type CommandObserver interface {
	ObserveCommand(command string, took time.Duration, err error)
}

// observedSession reports a session's commands to Config.Commands. It
// embeds the session, so imapserver sees the same optional interfaces.
type observedSession struct {
	*session
	obs CommandObserver
}

func (o observedSession) observe(cmd string, start time.Time, err error) error {
	o.obs.ObserveCommand(cmd, time.Since(start), err)
	return err
}

func (o observedSession) Login(username, password string) error {
	return o.observe("LOGIN", time.Now(), o.session.Login(username, password))
}

func (o observedSession) Select(name string, options *imap.SelectOptions) (*imap.SelectData, error) {
	start := time.Now()
	d, err := o.session.Select(name, options)
	return d, o.observe("SELECT", start, err)
}

func (o observedSession) Fetch(w *imapserver.FetchWriter, numSet imap.NumSet, options *imap.FetchOptions) error {
	return o.observe("FETCH", time.Now(), o.session.Fetch(w, numSet, options))
}

func (o observedSession) Search(kind imapserver.NumKind, criteria *imap.SearchCriteria, options *imap.SearchOptions) (*imap.SearchData, error) {
	start := time.Now()
	d, err := o.session.Search(kind, criteria, options)
	return d, o.observe("SEARCH", start, err)
}

func (o observedSession) Store(w *imapserver.FetchWriter, numSet imap.NumSet, flags *imap.StoreFlags, options *imap.StoreOptions) error {
	return o.observe("STORE", time.Now(), o.session.Store(w, numSet, flags, options))
}

func (o observedSession) Copy(numSet imap.NumSet, dest string) (*imap.CopyData, error) {
	start := time.Now()
	d, err := o.session.Copy(numSet, dest)
	return d, o.observe("COPY", start, err)
}

func (o observedSession) Move(w *imapserver.MoveWriter, numSet imap.NumSet, dest string) error {
	return o.observe("MOVE", time.Now(), o.session.Move(w, numSet, dest))
}

func (o observedSession) Expunge(w *imapserver.ExpungeWriter, uids *imap.UIDSet) error {
	return o.observe("EXPUNGE", time.Now(), o.session.Expunge(w, uids))
}

func (o observedSession) Append(name string, r imap.LiteralReader, options *imap.AppendOptions) (*imap.AppendData, error) {
	start := time.Now()
	d, err := o.session.Append(name, r, options)
	return d, o.observe("APPEND", start, err)
}

func (o observedSession) List(w *imapserver.ListWriter, ref string, patterns []string, options *imap.ListOptions) error {
	return o.observe("LIST", time.Now(), o.session.List(w, ref, patterns, options))
}

func (o observedSession) Status(name string, options *imap.StatusOptions) (*imap.StatusData, error) {
	start := time.Now()
	d, err := o.session.Status(name, options)
	return d, o.observe("STATUS", start, err)
}

func (o observedSession) Create(name string, options *imap.CreateOptions) error {
	return o.observe("CREATE", time.Now(), o.session.Create(name, options))
}

func (o observedSession) Delete(name string) error {
	return o.observe("DELETE", time.Now(), o.session.Delete(name))
}

func (o observedSession) Rename(name, newName string, options *imap.RenameOptions) error {
	return o.observe("RENAME", time.Now(), o.session.Rename(name, newName, options))
}
