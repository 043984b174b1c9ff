package storetest

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bmgate/bmgate/mailmap"
)

func testAppendUIDs(t *testing.T, s mailmap.Store) {
	ctx := context.Background()
	u := newUser(t, s, "alice")
	in := mailbox(t, s, u.ID, "INBOX")
	date := time.Date(2025, 12, 31, 23, 59, 58, 123456000, time.FixedZone("X", 3600))
	raw := message("first")
	m, err := s.AppendMessage(ctx, u.ID, in.ID, raw, []string{`\Seen`}, date)
	noErr(t, err, "AppendMessage")
	if m.UID != 1 || m.MailboxID != in.ID || m.Size != int64(len(raw)) || !m.InternalDate.Equal(date) ||
		m.MessageID != "first@test" || m.ModSeq <= in.HighestModSeq || !slices.Equal(m.Flags, []string{`\Seen`}) || m.ID == 0 {
		t.Fatalf("AppendMessage = %+v", m)
	}
	got, err := s.MessageRaw(ctx, u.ID, in.ID, m.UID)
	noErr(t, err, "MessageRaw")
	if !bytes.Equal(got, raw) {
		t.Fatalf("MessageRaw = %q", got)
	}
	// A zero date means now.
	before := time.Now().Add(-time.Minute)
	m2 := appendMsg(t, s, u.ID, in.ID, message("second"))
	if m2.InternalDate.Before(before) || m2.UID != 2 || m2.ModSeq <= m.ModSeq {
		t.Fatalf("second AppendMessage = %+v", m2)
	}
	// Binary-safe bytes, including NUL and invalid UTF-8.
	bin := append([]byte("Subject: bin\r\n\r\n"), 0, 0xff, 0xfe, '\r', '\n', 0)
	m3 := appendMsg(t, s, u.ID, in.ID, bin)
	got, err = s.MessageRaw(ctx, u.ID, in.ID, m3.UID)
	noErr(t, err, "MessageRaw binary")
	if !bytes.Equal(got, bin) {
		t.Fatalf("binary message changed: %q", got)
	}
	_, err = s.AppendMessage(ctx, u.ID, in.ID, nil, nil, time.Time{})
	wantErr(t, err, mailmap.ErrInvalidName, "AppendMessage of an empty message")
	_, err = s.AppendMessage(ctx, u.ID, 99999, raw, nil, time.Time{})
	wantErr(t, err, mailmap.ErrNotFound, "AppendMessage to an unknown mailbox")
	_, err = s.MessageRaw(ctx, u.ID, in.ID, 99)
	wantErr(t, err, mailmap.ErrNotFound, "MessageRaw unknown UID")

	list := messages(t, s, u.ID, in.ID)
	if !slices.Equal(uids(list), []uint32{1, 2, 3}) {
		t.Fatalf("Messages UIDs = %v", uids(list))
	}
	if list[0].Raw != nil {
		t.Fatal("Messages filled Raw (metadata only)")
	}
	if list[0].ID != m.ID || list[0].Size != m.Size || !list[0].InternalDate.Equal(date) || list[0].MessageID != "first@test" ||
		list[0].ModSeq != m.ModSeq || !slices.Equal(list[0].Flags, m.Flags) {
		t.Fatalf("Messages[0] = %+v, appended %+v", list[0], m)
	}
	st := status(t, s, u.ID, in.ID)
	if st.Messages != 3 || st.Unseen != 2 || st.Size != sumSizes(list) || st.UIDNext != 4 || st.UIDValidity != in.UIDValidity ||
		st.HighestModSeq < m3.ModSeq {
		t.Fatalf("MailboxStatus = %+v", st)
	}

	// Expunged UIDs are never handed out again.
	_, err = s.UpdateFlags(ctx, u.ID, in.ID, []uint32{2, 3}, mailmap.FlagsAdd, []string{`\Deleted`})
	noErr(t, err, "UpdateFlags")
	gone, err := s.Expunge(ctx, u.ID, in.ID, nil)
	noErr(t, err, "Expunge")
	if !slices.Equal(gone, []uint32{2, 3}) {
		t.Fatalf("Expunge = %v", gone)
	}
	m4 := appendMsg(t, s, u.ID, in.ID, message("fourth"))
	if m4.UID != 4 {
		t.Fatalf("UID after expunging the highest = %d, want 4", m4.UID)
	}
	if st := status(t, s, u.ID, in.ID); st.UIDValidity != in.UIDValidity || st.UIDNext != 5 || st.Messages != 2 {
		t.Fatalf("status after expunge and append: %+v", st)
	}
	// Each mailbox has its own UID sequence.
	sent := mailbox(t, s, u.ID, "Sent")
	if m := appendMsg(t, s, u.ID, sent.ID, message("s")); m.UID != 1 {
		t.Fatalf("first UID in Sent = %d", m.UID)
	}
}

// testMessagesRaw: the batch read returns each existing UID's bytes, leaves
// out missing and other users' messages, and spans more UIDs than one
// IN (…) chunk.
func testMessagesRaw(t *testing.T, s mailmap.Store) {
	ctx := context.Background()
	u := newUser(t, s, "alice")
	in := mailbox(t, s, u.ID, "INBOX")
	want := map[uint32][]byte{}
	var all []uint32
	for i := range 620 {
		raw := message(fmt.Sprintf("m%d", i))
		if i == 3 {
			raw = append([]byte("Subject: bin\r\n\r\n"), 0, 0xff, 0xfe, '\r', '\n')
		}
		m := appendMsg(t, s, u.ID, in.ID, raw)
		want[m.UID] = raw
		all = append(all, m.UID)
	}
	got, err := s.MessagesRaw(ctx, u.ID, in.ID, append(slices.Clone(all), 9999))
	noErr(t, err, "MessagesRaw")
	if len(got) != len(want) {
		t.Fatalf("MessagesRaw returned %d messages, want %d", len(got), len(want))
	}
	for uid, raw := range want {
		if !bytes.Equal(got[uid], raw) {
			t.Fatalf("MessagesRaw[%d] = %q, want %q", uid, got[uid], raw)
		}
	}
	got, err = s.MessagesRaw(ctx, u.ID, in.ID, []uint32{all[5], all[1]})
	noErr(t, err, "MessagesRaw of two")
	if len(got) != 2 || !bytes.Equal(got[all[5]], want[all[5]]) || !bytes.Equal(got[all[1]], want[all[1]]) {
		t.Fatalf("MessagesRaw of two = %d messages", len(got))
	}
	got, err = s.MessagesRaw(ctx, u.ID, in.ID, nil)
	noErr(t, err, "MessagesRaw of none")
	if len(got) != 0 {
		t.Fatalf("MessagesRaw of none = %d messages", len(got))
	}
	_, err = s.UpdateFlags(ctx, u.ID, in.ID, all[:1], mailmap.FlagsAdd, []string{`\Deleted`})
	noErr(t, err, "UpdateFlags")
	_, err = s.Expunge(ctx, u.ID, in.ID, all[:1])
	noErr(t, err, "Expunge first")
	got, err = s.MessagesRaw(ctx, u.ID, in.ID, all[:2])
	noErr(t, err, "MessagesRaw after expunge")
	if _, ok := got[all[0]]; ok || len(got) != 1 {
		t.Fatalf("MessagesRaw after expunge = %d messages (expunged present: %v)", len(got), ok)
	}
	// Another user sees nothing of alice's mailbox.
	b := newUser(t, s, "bob")
	got, err = s.MessagesRaw(ctx, b.ID, in.ID, all)
	noErr(t, err, "MessagesRaw of another user's mailbox")
	if len(got) != 0 {
		t.Fatalf("bob read %d of alice's messages", len(got))
	}
}

func testMessageID(t *testing.T, s mailmap.Store) {
	u := newUser(t, s, "alice")
	in := mailbox(t, s, u.ID, "INBOX")
	cases := []struct{ raw, want string }{
		{"Message-ID: <simple@host>\r\n\r\nbody", "simple@host"},
		{"message-id:<lower@case>\n\nbody", "lower@case"},
		{"Subject: x\r\nMessage-Id:\r\n  <folded@line>\r\n\r\n", "folded@line"},
		{"Subject: no id\r\n\r\nMessage-ID: <in@body>\r\n", ""},
		{"Message-ID: bare@id\r\n\r\n", "bare@id"},
		{"Message-ID: <first@one>\r\nMessage-ID: <second@one>\r\n\r\n", "first@one"},
		{"X-Message-ID: <not@this>\r\n\r\n", ""},
		{"Message-ID: <a@b> (comment)\r\n\r\n", "a@b"},
	}
	for i, c := range cases {
		m := appendMsg(t, s, u.ID, in.ID, []byte(c.raw))
		if m.MessageID != c.want {
			t.Errorf("case %d: MessageID = %q, want %q", i, m.MessageID, c.want)
		}
	}
}

func testFlags(t *testing.T, s mailmap.Store) {
	ctx := context.Background()
	u := newUser(t, s, "alice")
	in := mailbox(t, s, u.ID, "INBOX")
	m1 := appendMsg(t, s, u.ID, in.ID, message("1"), `\seen`, `\Recent`, "$Label1", "$label1")
	if !slices.Equal(m1.Flags, []string{"$Label1", `\Seen`}) {
		t.Fatalf("flags normalised to %v", m1.Flags)
	}
	appendMsg(t, s, u.ID, in.ID, message("2"))
	appendMsg(t, s, u.ID, in.ID, message("3"), `\Flagged`)

	before := status(t, s, u.ID, in.ID).HighestModSeq
	got, err := s.UpdateFlags(ctx, u.ID, in.ID, []uint32{1, 2, 3, 99}, mailmap.FlagsAdd, []string{`\FLAGGED`, "$Delivered"})
	noErr(t, err, "UpdateFlags add")
	if len(got) != 3 {
		t.Fatalf("UpdateFlags returned %d messages, want the 3 that exist", len(got))
	}
	want := [][]string{{"$Delivered", "$Label1", `\Flagged`, `\Seen`}, {"$Delivered", `\Flagged`}, {"$Delivered", `\Flagged`}}
	for i, m := range got {
		if !slices.Equal(m.Flags, want[i]) || m.ModSeq <= before {
			t.Fatalf("after add, message %d: flags %v modseq %d (before %d)", m.UID, m.Flags, m.ModSeq, before)
		}
	}
	after := status(t, s, u.ID, in.ID).HighestModSeq
	if after <= before {
		t.Fatalf("HIGHESTMODSEQ did not grow: %d → %d", before, after)
	}

	// A no-op change keeps the modseq.
	got, err = s.UpdateFlags(ctx, u.ID, in.ID, []uint32{2}, mailmap.FlagsAdd, []string{"$delivered"})
	noErr(t, err, "UpdateFlags no-op")
	if len(got) != 1 || got[0].ModSeq > after {
		t.Fatalf("no-op UpdateFlags = %+v (modseq was %d)", got, after)
	}

	got, err = s.UpdateFlags(ctx, u.ID, in.ID, []uint32{1, 3}, mailmap.FlagsRemove, []string{"$DELIVERED", `\flagged`})
	noErr(t, err, "UpdateFlags remove")
	if !slices.Equal(got[0].Flags, []string{"$Label1", `\Seen`}) || len(got[1].Flags) != 0 {
		t.Fatalf("after remove: %v / %v", got[0].Flags, got[1].Flags)
	}
	got, err = s.UpdateFlags(ctx, u.ID, in.ID, []uint32{2}, mailmap.FlagsReplace, []string{`\Answered`, `\Draft`})
	noErr(t, err, "UpdateFlags replace")
	if !slices.Equal(got[0].Flags, []string{`\Answered`, `\Draft`}) {
		t.Fatalf("after replace: %v", got[0].Flags)
	}
	list := messages(t, s, u.ID, in.ID)
	if !slices.Equal(list[0].Flags, []string{"$Label1", `\Seen`}) || !slices.Equal(list[1].Flags, []string{`\Answered`, `\Draft`}) ||
		len(list[2].Flags) != 0 {
		t.Fatalf("stored flags: %v %v %v", list[0].Flags, list[1].Flags, list[2].Flags)
	}
	if st := status(t, s, u.ID, in.ID); st.Unseen != 2 {
		t.Fatalf("Unseen = %d, want 2", st.Unseen)
	}
	for _, bad := range [][]string{{`\Bogus`}, {"has space"}, {"paren("}, {""}, {"naïve"}, {strings.Repeat("k", 200)}} {
		_, err := s.UpdateFlags(ctx, u.ID, in.ID, []uint32{1}, mailmap.FlagsAdd, bad)
		wantErr(t, err, mailmap.ErrInvalidName, fmt.Sprintf("UpdateFlags(%q)", bad))
		_, err = s.AppendMessage(ctx, u.ID, in.ID, message("bad"), bad, time.Time{})
		wantErr(t, err, mailmap.ErrInvalidName, fmt.Sprintf("AppendMessage with flags %q", bad))
	}
	if got, err := s.UpdateFlags(ctx, u.ID, in.ID, nil, mailmap.FlagsAdd, []string{`\Seen`}); err != nil || len(got) != 0 {
		t.Fatalf("UpdateFlags with no UIDs = %v, %v", got, err)
	}
}

func testCopyMoveExpunge(t *testing.T, s mailmap.Store) {
	ctx := context.Background()
	u := newUser(t, s, "alice")
	in := mailbox(t, s, u.ID, "INBOX")
	arch := mailbox(t, s, u.ID, "Archive")
	trash := mailbox(t, s, u.ID, "Trash")
	for i := range 5 {
		appendMsg(t, s, u.ID, in.ID, message(fmt.Sprint(i)), "$K"+fmt.Sprint(i))
	}
	appendMsg(t, s, u.ID, arch.ID, message("a"))
	dstBefore := status(t, s, u.ID, arch.ID)

	src, dst, err := s.CopyMessages(ctx, u.ID, in.ID, []uint32{2, 4, 5, 77}, arch.ID)
	noErr(t, err, "CopyMessages")
	if !slices.Equal(src, []uint32{2, 4, 5}) || !slices.Equal(dst, []uint32{2, 3, 4}) {
		t.Fatalf("CopyMessages = %v → %v", src, dst)
	}
	inMsgs := messages(t, s, u.ID, in.ID)
	archMsgs := messages(t, s, u.ID, arch.ID)
	if len(inMsgs) != 5 || len(archMsgs) != 4 {
		t.Fatalf("after copy: %d in INBOX, %d in Archive", len(inMsgs), len(archMsgs))
	}
	for i, d := range dst {
		var orig mailmap.Message
		for _, m := range inMsgs {
			if m.UID == src[i] {
				orig = m
			}
		}
		c := archMsgs[1+i]
		if c.UID != d || !slices.Equal(c.Flags, orig.Flags) || !c.InternalDate.Equal(orig.InternalDate) || c.Size != orig.Size ||
			c.MessageID != orig.MessageID || c.MailboxID != arch.ID || c.ModSeq <= dstBefore.HighestModSeq {
			t.Fatalf("copy %+v of %+v", c, orig)
		}
		a, err := s.MessageRaw(ctx, u.ID, arch.ID, d)
		noErr(t, err, "MessageRaw copy")
		b, err := s.MessageRaw(ctx, u.ID, in.ID, src[i])
		noErr(t, err, "MessageRaw original")
		if !bytes.Equal(a, b) {
			t.Fatal("copy's bytes differ")
		}
	}
	checkUsage(t, s, u.ID, in.ID, sumSizes(inMsgs)+sumSizes(archMsgs))

	// Move: gone from the source, new UIDs in the destination, flags kept.
	src, dst, err = s.MoveMessages(ctx, u.ID, in.ID, []uint32{1, 2}, trash.ID)
	noErr(t, err, "MoveMessages")
	if !slices.Equal(src, []uint32{1, 2}) || !slices.Equal(dst, []uint32{1, 2}) {
		t.Fatalf("MoveMessages = %v → %v", src, dst)
	}
	if got := uids(messages(t, s, u.ID, in.ID)); !slices.Equal(got, []uint32{3, 4, 5}) {
		t.Fatalf("INBOX after move: %v", got)
	}
	moved := messages(t, s, u.ID, trash.ID)
	if len(moved) != 2 || !slices.Equal(moved[1].Flags, []string{"$K1"}) || moved[1].MessageID != "1@test" {
		t.Fatalf("Trash after move: %+v", moved)
	}
	raw, err := s.MessageRaw(ctx, u.ID, trash.ID, 2)
	noErr(t, err, "MessageRaw moved")
	if !bytes.Equal(raw, message("1")) {
		t.Fatal("moved message's bytes differ")
	}
	_, err = s.MessageRaw(ctx, u.ID, in.ID, 1)
	wantErr(t, err, mailmap.ErrNotFound, "MessageRaw of a moved-away message")
	// Moving does not change usage.
	all := slices.Concat(messages(t, s, u.ID, in.ID), messages(t, s, u.ID, arch.ID), moved)
	checkUsage(t, s, u.ID, in.ID, sumSizes(all))

	// Expunge(nil) removes only \Deleted messages; Expunge(uids) only those of them.
	_, err = s.UpdateFlags(ctx, u.ID, in.ID, []uint32{3, 4}, mailmap.FlagsAdd, []string{`\Deleted`})
	noErr(t, err, "UpdateFlags")
	gone, err := s.Expunge(ctx, u.ID, in.ID, []uint32{4, 5})
	noErr(t, err, "Expunge(uids)")
	if !slices.Equal(gone, []uint32{4}) {
		t.Fatalf("Expunge([4 5]) = %v, want [4] (5 is not \\Deleted)", gone)
	}
	gone, err = s.Expunge(ctx, u.ID, in.ID, nil)
	noErr(t, err, "Expunge(nil)")
	if !slices.Equal(gone, []uint32{3}) {
		t.Fatalf("Expunge(nil) = %v", gone)
	}
	if got := uids(messages(t, s, u.ID, in.ID)); !slices.Equal(got, []uint32{5}) {
		t.Fatalf("INBOX after expunge: %v", got)
	}
	gone, err = s.Expunge(ctx, u.ID, in.ID, nil)
	noErr(t, err, "Expunge with nothing to do")
	if len(gone) != 0 {
		t.Fatalf("second Expunge = %v", gone)
	}
	// The copies of expunged originals keep their bytes.
	for _, d := range []uint32{2, 3} {
		if _, err := s.MessageRaw(ctx, u.ID, arch.ID, d); err != nil {
			t.Fatalf("copy %d lost after expunging its original: %v", d, err)
		}
	}
	all = slices.Concat(messages(t, s, u.ID, in.ID), messages(t, s, u.ID, arch.ID), messages(t, s, u.ID, trash.ID))
	checkUsage(t, s, u.ID, in.ID, sumSizes(all))

	// Nothing to copy or move is not an error.
	src, dst, err = s.CopyMessages(ctx, u.ID, in.ID, []uint32{1000}, arch.ID)
	if err != nil || src != nil || dst != nil {
		t.Fatalf("CopyMessages of nothing = %v %v %v", src, dst, err)
	}
	_, _, err = s.CopyMessages(ctx, u.ID, in.ID, []uint32{5}, 99999)
	wantErr(t, err, mailmap.ErrNotFound, "CopyMessages to an unknown mailbox")
	_, _, err = s.MoveMessages(ctx, u.ID, 99999, []uint32{5}, in.ID)
	wantErr(t, err, mailmap.ErrNotFound, "MoveMessages from an unknown mailbox")

	// Large UID sets (e.g. 1:*) work.
	many := make([]uint32, 2000)
	for i := range many {
		many[i] = uint32(i + 1)
	}
	next := status(t, s, u.ID, in.ID).UIDNext
	src, dst, err = s.CopyMessages(ctx, u.ID, arch.ID, many, in.ID)
	noErr(t, err, "CopyMessages with 2000 UIDs")
	if !slices.Equal(src, []uint32{1, 2, 3, 4}) || !slices.Equal(dst, []uint32{next, next + 1, next + 2, next + 3}) {
		t.Fatalf("CopyMessages(1:2000) = %v → %v", src, dst)
	}
}

func testMoveSameMailbox(t *testing.T, s mailmap.Store) {
	ctx := context.Background()
	u := newUser(t, s, "alice")
	in := mailbox(t, s, u.ID, "INBOX")
	appendMsg(t, s, u.ID, in.ID, message("1"))
	appendMsg(t, s, u.ID, in.ID, message("2"))
	src, dst, err := s.MoveMessages(ctx, u.ID, in.ID, []uint32{1}, in.ID)
	noErr(t, err, "MoveMessages within a mailbox")
	if !slices.Equal(src, []uint32{1}) || !slices.Equal(dst, []uint32{3}) {
		t.Fatalf("MoveMessages = %v → %v", src, dst)
	}
	if got := uids(messages(t, s, u.ID, in.ID)); !slices.Equal(got, []uint32{2, 3}) {
		t.Fatalf("UIDs after moving within: %v", got)
	}
}

func testFindByMessageID(t *testing.T, s mailmap.Store) {
	ctx := context.Background()
	a := newUser(t, s, "alice")
	b := newUser(t, s, "bob")
	sent := mailbox(t, s, a.ID, "Sent")
	in := mailbox(t, s, a.ID, "INBOX")
	m1 := appendMsg(t, s, a.ID, sent.ID, message("thread"))
	m2 := appendMsg(t, s, a.ID, in.ID, message("thread"))
	appendMsg(t, s, b.ID, mailbox(t, s, b.ID, "Sent").ID, message("thread"))

	got, err := s.FindByMessageID(ctx, a.ID, mailmap.SpecialSent, "thread@test")
	noErr(t, err, "FindByMessageID in Sent")
	if len(got) != 1 || got[0].ID != m1.ID || got[0].MailboxID != sent.ID {
		t.Fatalf("FindByMessageID(Sent) = %+v", got)
	}
	got, err = s.FindByMessageID(ctx, a.ID, "", "<thread@test>")
	noErr(t, err, "FindByMessageID anywhere")
	if len(got) != 2 || got[0].ID != m1.ID || got[1].ID != m2.ID {
		t.Fatalf("FindByMessageID(any) = %+v", got)
	}
	got, err = s.FindByMessageID(ctx, a.ID, "", "nothing@test")
	noErr(t, err, "FindByMessageID none")
	if len(got) != 0 {
		t.Fatalf("FindByMessageID(unknown) = %+v", got)
	}
	got, err = s.FindByMessageID(ctx, a.ID, "", "")
	if err != nil || len(got) != 0 {
		t.Fatalf("FindByMessageID(\"\") = %+v, %v", got, err)
	}
}

func testQuota(t *testing.T, s mailmap.Store) {
	ctx := context.Background()
	u := newUser(t, s, "alice")
	in := mailbox(t, s, u.ID, "INBOX")
	arch := mailbox(t, s, u.ID, "Archive")
	raw := message("q") // every test message of this id has the same size
	size := int64(len(raw))
	noErr(t, s.SetQuota(ctx, u.ID, 3*size), "SetQuota")
	for range 3 {
		appendMsg(t, s, u.ID, in.ID, raw)
	}
	_, err := s.AppendMessage(ctx, u.ID, in.ID, raw, nil, time.Time{})
	wantErr(t, err, mailmap.ErrOverQuota, "AppendMessage over quota")
	if st := status(t, s, u.ID, in.ID); st.Messages != 3 || st.UIDNext != 4 {
		t.Fatalf("a refused append left traces: %+v", st)
	}
	_, _, err = s.CopyMessages(ctx, u.ID, in.ID, []uint32{1}, arch.ID)
	wantErr(t, err, mailmap.ErrOverQuota, "CopyMessages over quota")
	if st := status(t, s, u.ID, arch.ID); st.Messages != 0 || st.UIDNext != 1 {
		t.Fatalf("a refused copy left traces: %+v", st)
	}
	// Moving does not need room.
	_, _, err = s.MoveMessages(ctx, u.ID, in.ID, []uint32{1}, arch.ID)
	noErr(t, err, "MoveMessages at quota")
	// Expunging frees room.
	_, err = s.UpdateFlags(ctx, u.ID, in.ID, []uint32{2}, mailmap.FlagsAdd, []string{`\Deleted`})
	noErr(t, err, "UpdateFlags")
	_, err = s.Expunge(ctx, u.ID, in.ID, nil)
	noErr(t, err, "Expunge")
	appendMsg(t, s, u.ID, in.ID, raw)
	_, err = s.AppendMessage(ctx, u.ID, in.ID, raw, nil, time.Time{})
	wantErr(t, err, mailmap.ErrOverQuota, "AppendMessage at quota again")
	// Deleting a mailbox frees its messages' room.
	box, err := s.CreateMailbox(ctx, u.ID, "Box", "")
	noErr(t, err, "CreateMailbox")
	_, _, err = s.MoveMessages(ctx, u.ID, in.ID, []uint32{3}, box.ID)
	noErr(t, err, "MoveMessages")
	noErr(t, s.DeleteMailbox(ctx, u.ID, "Box"), "DeleteMailbox")
	appendMsg(t, s, u.ID, in.ID, raw)
	// Unlimited again.
	noErr(t, s.SetQuota(ctx, u.ID, 0), "SetQuota(0)")
	for range 3 {
		appendMsg(t, s, u.ID, in.ID, raw)
	}
	wantErr(t, s.SetQuota(ctx, u.ID, -1), mailmap.ErrInvalidName, "SetQuota(-1)")
	all := slices.Concat(messages(t, s, u.ID, in.ID), messages(t, s, u.ID, arch.ID))
	checkUsage(t, s, u.ID, in.ID, sumSizes(all))
	// Another user's usage is separate.
	b := newUser(t, s, "bob")
	checkUsage(t, s, b.ID, mailbox(t, s, b.ID, "INBOX").ID, 0)
}
