package imapd

import (
	"bufio"
	"net"
	"testing"
	"time"
)

func TestZZExp(t *testing.T) {
	e := newEnv(t, Config{})
	for _, cmd := range []string{"a LOGIN {5000}\r\n", "a AUTHENTICATE PLAIN !!!\r\n", "a AUTHENTICATE PLAIN\r\n"} {
		c, err := net.Dial("tcp", e.addr)
		if err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(c)
		l, _ := br.ReadString('\n')
		t.Logf("greet %q", l)
		c.Write([]byte(cmd))
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		l, err = br.ReadString('\n')
		t.Logf("%q -> %q %v", cmd, l, err)
		if cmd == "a AUTHENTICATE PLAIN\r\n" {
			c.Write([]byte("!!!\r\n"))
			l, err = br.ReadString('\n')
			t.Logf("  -> %q %v", l, err)
		}
		c.Close()
	}
}
