package main

import (
	"encoding/base64"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/bmgate/bmgate/gateway/pyapi"
)

// TestServeAPI: `api = ADDR` starts the PyBitmessage XML-RPC API in bmgate
// serve, logins are the users', and what it does is what the commands see.
func TestServeAPI(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	in := newInstance(t, "api", "")
	api := freePort(t)
	in.extra = []string{"--api", api}
	in.cli("alice-secret\n", "user", "add", "alice")
	in.serve()

	call := func(user, pass, method string, params ...string) string {
		t.Helper()
		var b strings.Builder
		b.WriteString("<?xml version='1.0'?><methodCall><methodName>" + method + "</methodName><params>")
		for _, p := range params {
			b.WriteString("<param><value><string>" + p + "</string></value></param>")
		}
		b.WriteString("</params></methodCall>")
		req, _ := http.NewRequest("POST", "http://"+api+"/", strings.NewReader(b.String()))
		req.SetBasicAuth(user, pass)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s: %v\n%s", method, err, in.log.String())
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		s := string(body)
		i, j := strings.Index(s, "<string>"), strings.Index(s, "</string>")
		if resp.StatusCode != 200 || i < 0 || j < i {
			t.Fatalf("%s: %s\n%s", method, resp.Status, s)
		}
		return s[i+len("<string>") : j]
	}
	if got := call("alice", "wrong", "helloWorld", "a", "b"); got != pyapi.AuthFailed {
		t.Errorf("wrong password: %q", got)
	}
	addr := call("alice", "alice-secret", "createRandomAddress", base64.StdEncoding.EncodeToString([]byte("From the API")))
	if !strings.HasPrefix(addr, "BM-") {
		t.Fatalf("createRandomAddress: %q", addr)
	}
	if list := in.cli("", "address", "list", "--user", "alice"); !strings.Contains(list, addr) || !strings.Contains(list, "From the API") {
		t.Errorf("address list lacks %s:\n%s", addr, list)
	}
	if got := call("alice", "alice-secret", "clientStatus"); !strings.Contains(got, `"softwareName": "bmgate"`) {
		t.Errorf("clientStatus: %s", got)
	}
	if out := in.cli("", "login-guard", "list"); !strings.Contains(out, "alice") {
		t.Errorf("the failed API login is not in the login guard:\n%s", out)
	}
}
