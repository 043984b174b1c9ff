package imapd

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
)

func TestSearch(t *testing.T) {
	e := newEnv(t, Config{})
	ctx := context.Background()
	day := func(d int) time.Time { return time.Date(2026, 11, d, 12, 0, 0, 0, time.UTC) }
	add := func(raw string, date time.Time, flags ...string) {
		if _, err := e.store.AppendMessage(ctx, e.user.ID, e.inbox.ID, []byte(raw), flags, date); err != nil {
			t.Fatal(err)
		}
	}
	add(mkMail("bob@example.test", "alice@example.test", "Lunch on Friday", "See you at noon"), day(1), `\Seen`)      // 1
	add(multipartMail, day(5))                                                                                        // 2
	add(mkMail("carol@example.test", "alice@example.test", "Invoice 42", "Amount due: 10 EUR"), day(10), `\Flagged`)  // 3
	add(mkMail("bob@example.test", "dave@example.test", "Re: Lunch", "Noon is fine"), day(15), `\Seen`, "$Delivered") // 4
	add(mkMail("eve@example.test", "alice@example.test", "Big one", string(make([]byte, 3000))), day(20))             // 5

	c := e.login(nil)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		crit imap.SearchCriteria
		want []uint32
	}{
		{"ALL", imap.SearchCriteria{}, []uint32{1, 2, 3, 4, 5}},
		{"FROM bob", imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "From", Value: "BOB@"}}}, []uint32{1, 2, 4}},
		{"SUBJECT lunch", imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: "lunch"}}}, []uint32{1, 4}},
		{"SUBJECT (encoded word)", imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: "grüße"}}}, []uint32{2}},
		{"HEADER In-Reply-To present", imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "In-Reply-To"}}}, []uint32{2}},
		{"BODY noon", imap.SearchCriteria{Body: []string{"noon"}}, []uint32{1, 4}},
		{"BODY in a QP part", imap.SearchCriteria{Body: []string{"schöne grüße"}}, []uint32{2}},
		{"BODY not in headers", imap.SearchCriteria{Body: []string{"Invoice"}}, nil},
		{"TEXT finds headers", imap.SearchCriteria{Text: []string{"Invoice"}}, []uint32{3}},
		{"SEEN", imap.SearchCriteria{Flag: []imap.Flag{imap.FlagSeen}}, []uint32{1, 4}},
		{"UNSEEN", imap.SearchCriteria{NotFlag: []imap.Flag{imap.FlagSeen}}, []uint32{2, 3, 5}},
		{"KEYWORD $delivered (any case)", imap.SearchCriteria{Flag: []imap.Flag{"$delivered"}}, []uint32{4}},
		{"FLAGGED", imap.SearchCriteria{Flag: []imap.Flag{imap.FlagFlagged}}, []uint32{3}},
		{"SINCE 10-Nov", imap.SearchCriteria{Since: day(10).Truncate(24 * time.Hour)}, []uint32{3, 4, 5}},
		{"BEFORE 10-Nov", imap.SearchCriteria{Before: day(10).Truncate(24 * time.Hour)}, []uint32{1, 2}},
		{"ON 15-Nov", imap.SearchCriteria{Since: day(15).Truncate(24 * time.Hour), Before: day(16).Truncate(24 * time.Hour)}, []uint32{4}},
		{"SENTSINCE 21-Nov", imap.SearchCriteria{SentSince: time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC)}, []uint32{2}},
		{"LARGER 2000", imap.SearchCriteria{Larger: 2000}, []uint32{5}},
		{"SMALLER 300", imap.SearchCriteria{Smaller: 300}, []uint32{1, 3, 4}},
		{"UID 2:4", imap.SearchCriteria{UID: []imap.UIDSet{{{Start: 2, Stop: 4}}}}, []uint32{2, 3, 4}},
		{"seq 4:*", imap.SearchCriteria{SeqNum: []imap.SeqSet{{{Start: 4, Stop: 0}}}}, []uint32{4, 5}},
		{"NOT SEEN FROM bob", imap.SearchCriteria{Not: []imap.SearchCriteria{{Flag: []imap.Flag{imap.FlagSeen}}},
			Header: []imap.SearchCriteriaHeaderField{{Key: "From", Value: "bob"}}}, []uint32{2}},
		{"OR FLAGGED LARGER 2000", imap.SearchCriteria{Or: [][2]imap.SearchCriteria{{{Flag: []imap.Flag{imap.FlagFlagged}}, {Larger: 2000}}}}, []uint32{3, 5}},
		{"OR (BODY due) NOT UID 1:4", imap.SearchCriteria{Or: [][2]imap.SearchCriteria{{{Body: []string{"due"}}, {Not: []imap.SearchCriteria{{UID: []imap.UIDSet{{{Start: 1, Stop: 4}}}}}}}}}, []uint32{3, 5}},
	}
	for _, tc := range cases {
		res, err := c.Search(&tc.crit, nil).Wait()
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if got := res.AllSeqNums(); !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}

	// UID SEARCH with ESEARCH return options.
	res, err := c.UIDSearch(&imap.SearchCriteria{NotFlag: []imap.Flag{imap.FlagSeen}},
		&imap.SearchOptions{ReturnMin: true, ReturnMax: true, ReturnCount: true, ReturnAll: true}).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if res.Min != 2 || res.Max != 5 || res.Count != 3 || !slices.Equal(res.AllUIDs(), []imap.UID{2, 3, 5}) {
		t.Errorf("ESEARCH %+v", res)
	}
	// SEARCHRES (imapclient does not send SAVE).
	r := e.raw()
	r.ok("LOGIN %s %q", testUser, testPass)
	r.ok("SELECT INBOX")
	// RFC 5182 §2.1 wants no ESEARCH for SAVE alone; imapserver sends one
	// anyway (docs/compatibility.md). Clients ignore it.
	if u := r.ok("SEARCH RETURN (SAVE) UNSEEN"); len(u) > 1 {
		t.Errorf("SEARCH RETURN (SAVE) answered %q", u)
	}
	if u := r.ok("FETCH $ (UID)"); !slices.Equal(u, []string{"* 2 FETCH (UID 2)", "* 3 FETCH (UID 3)", "* 5 FETCH (UID 5)"}) {
		t.Errorf("FETCH $ = %q", u)
	}
	if u := r.ok("UID SEARCH RETURN (SAVE MIN) OR FLAGGED UNSEEN"); !slices.Equal(u, []string{`* ESEARCH (TAG "R5") UID MIN 2`}) {
		t.Errorf("SEARCH RETURN (SAVE MIN) answered %q", u)
	}
	if u := r.ok("SEARCH UID $"); !slices.Equal(u, []string{"* SEARCH 2"}) {
		t.Errorf("SEARCH UID $ = %q", u)
	}
	none, err := c.Search(&imap.SearchCriteria{Body: []string{"no such text anywhere"}}, &imap.SearchOptions{ReturnCount: true}).Wait()
	if err != nil || none.Count != 0 {
		t.Errorf("empty ESEARCH %+v %v", none, err)
	}
}
