package chat

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// The browser tests drive a headless Chromium through the page of the
// WebSocket gateway (web/index.html): they check the page with a real
// browser, where the gateway's own tests speak WebSocket from Go.

// browserWait bounds a browser test as a whole: the browser starts, loads the
// pages and takes the screenshot within it, on a loaded machine too.
const browserWait = 90 * time.Second

// browserPath returns the path of a Chromium or Chrome to drive. Without
// one the test is skipped, unless CPORT_REQUIRE_BROWSER=1 (CI, which
// installs chromium): then it fails.
func browserPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	if os.Getenv("CPORT_REQUIRE_BROWSER") == "1" {
		t.Fatal("no chromium, chromium-browser or google-chrome in PATH, and CPORT_REQUIRE_BROWSER=1")
	}
	t.Skip("no chromium, chromium-browser or google-chrome in PATH (CPORT_REQUIRE_BROWSER=1 makes this a failure)")
	return ""
}

// startBrowser starts a headless browser, with a user data directory of
// its own, that lives until the end of the test or browserWait, whichever
// comes first; its tabs are made with openTab.
func startBrowser(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(browserPath(t)),
		chromedp.NoSandbox, // the tests may run as root, where Chromium's sandbox refuses to start
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(900, 600),
	)
	ctx, cancel := context.WithTimeout(context.Background(), browserWait)
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	bctx, cancelBrowser := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancelBrowser()
		cancelAlloc() // waits for the browser to exit, before TempDir's removal
		cancel()
	})
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("starting the browser: %v", err)
	}
	return bctx
}

// startWSChat starts a server with Line framing and its WebSocket gateway
// on wsAddr.
func startWSChat(t *testing.T, wsAddr string) *testServer {
	t.Helper()
	return startServer(t, Config{Framing: Line, WSAddr: wsAddr})
}

// openTab opens url in a new tab of the browser, with a 900x600 viewport,
// and waits until the page has connected to the server.
func openTab(t *testing.T, browser context.Context, name, url string) context.Context {
	t.Helper()
	tab, cancel := chromedp.NewContext(browser)
	t.Cleanup(cancel)
	if err := chromedp.Do(tab, chromedp.EmulateViewport(900, 600), chromedp.Navigate(url)); err != nil {
		t.Fatalf("%s: opening %s: %v", name, url, err)
	}
	waitState(t, tab, name, "open")
	return tab
}

// waitState waits until the page's #status has data-state state; it
// fails the test after longWait.
func waitState(t *testing.T, tab context.Context, name, state string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(tab, longWait)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf("#status[data-state=%q]", state)))); err != nil {
		status, _ := chromedp.Run(tab, chromedp.Evaluate[string](`(s => s.dataset.state + " (" + s.textContent + ")")(document.getElementById("status"))`))
		t.Fatalf("%s: waiting for the page's status to be %q: %v; it is %s", name, state, err, status)
	}
}

// say types text into the page's input and clicks its send button.
func say(t *testing.T, tab context.Context, name, text string) {
	t.Helper()
	if err := chromedp.Do(tab, chromedp.SendKeys(chromedp.ID("input"), text), chromedp.Click(chromedp.ID("send"))); err != nil {
		t.Fatalf("%s: sending %q: %v", name, text, err)
	}
}

// messagesJS returns the texts of the messages the page shows.
const messagesJS = `[...document.querySelectorAll("#messages .msg")].map(m => m.textContent)`

// waitMessages waits until the page shows every one of want, and returns
// what it shows; it fails the test after longWait.
func waitMessages(t *testing.T, tab context.Context, name string, want []string) []string {
	t.Helper()
	poll := chromedp.PollFunction[chromedp.Void](
		`want => { const got = `+messagesJS+`; return want.every(w => got.includes(w)); }`,
		chromedp.WithPollingArgs(want), chromedp.WithPollingInterval(20*time.Millisecond), chromedp.WithPollingTimeout(0))
	ctx, cancel := context.WithTimeout(tab, longWait)
	err := chromedp.Do(ctx, poll)
	cancel()
	got, evalErr := chromedp.Run(tab, chromedp.Evaluate[[]string](messagesJS))
	if err != nil || evalErr != nil {
		t.Fatalf("%s: waiting for the messages %q: %v; the page shows %q (%v)", name, want, err, got, evalErr)
	}
	return got
}

// waitLine waits until the TCP client c has received line (with its
// newline).
func waitLine(t *testing.T, c *client, line string) {
	t.Helper()
	var got []byte
	if !c.waitCond(nil, longWait, func() bool {
		got = c.data
		return bytes.Contains(got, []byte(line+"\n"))
	}) {
		t.Fatalf("%s: %q did not arrive after %v; received %q", c.name, line, longWait, got)
	}
}

// TestBrowserChat chats in two browser tabs and a TCP client (Line framing)
// through one server: every message, typed in a tab or written by the TCP
// client, reaches every tab and the TCP client. It then saves a screenshot
// of the first tab as chat-page.png in $CPORT_ARTIFACTS (or a temporary
// directory), and checks that it is not blank.
func TestBrowserChat(t *testing.T) {
	browser := startBrowser(t)
	ts := startWSChat(t, "127.0.0.1:0")
	url := "http://" + ts.WSAddr().String() + "/"

	tcp := ts.dial("tcp", keepReads)
	ts.waitActive(1) // registered: no message goes by before it
	tab1 := openTab(t, browser, "tab 1", url)
	tab2 := openTab(t, browser, "tab 2", url)
	ts.waitActive(3)

	// A conversation, one message at a time: each goes through the room
	// (the TCP client has it) before the next, so that everyone shows them
	// in this order.
	conversation := []struct{ from, text string }{
		{"tab 1", "hi, this is a browser tab"},
		{"tab 2", "another tab here, same room"},
		{"tcp", "hello from the terminal"},
		{"tab 1", "every message reaches every client, browser or TCP"},
		{"tcp", "nc works too: one line, one message"},
		{"tab 2", "and the page reconnects by itself when the server restarts"},
		{"tcp", "started with cport serve --framing line --ws-addr 127.0.0.1:8080"},
		{"tab 1", "nice. next: cport load --clients 1000"},
		{"tcp", "watch the msg/s figure up there"},
		{"tab 2", "see you on the other side"},
	}
	var want []string
	for _, m := range conversation {
		switch m.from {
		case "tab 1":
			say(t, tab1, m.from, m.text)
		case "tab 2":
			say(t, tab2, m.from, m.text)
		default:
			tcp.send([]byte(m.text + "\n"))
		}
		waitLine(t, tcp, m.text)
		want = append(want, m.text)
	}

	for name, tab := range map[string]context.Context{"tab 1": tab1, "tab 2": tab2} {
		if got := waitMessages(t, tab, name, want); !slices.Equal(got, want) {
			t.Errorf("%s shows %q; want %q", name, got, want)
		}
	}
	if got, _, _ := tcp.received(); string(got) != strings.Join(want, "\n")+"\n" {
		t.Errorf("the TCP client received %q; want the lines %q", got, want)
	}
	total, err := chromedp.Run(tab1, chromedp.TextContent(chromedp.ID("total")))
	if err != nil || total != fmt.Sprint(len(want)) {
		t.Errorf("tab 1's total is %q (%v); want %d", total, err, len(want))
	}

	shot, err := chromedp.Run(tab1, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("tab 1: screenshot: %v", err)
	}
	saveArtifact(t, "chat-page.png", shot)
	if err := checkNotBlank(shot); err != nil {
		t.Errorf("the screenshot of tab 1: %v", err)
	}

	// After the screenshot, messages it need not show: markup is shown as
	// text, and a message that is not UTF-8 (a binary frame) is decoded.
	markup, latin1 := "<b>not bold</b>", "caf\xe9"
	tcp.send([]byte(markup + "\n" + latin1 + "\n"))
	waitMessages(t, tab1, "tab 1", []string{markup, "caf\uFFFD"})
	const check = `[document.querySelectorAll("#messages b").length, [...document.querySelectorAll("#messages .msg.binary")].map(m => m.textContent).join()]`
	if got, err := chromedp.Run(tab1, chromedp.Evaluate[[]any](check)); err != nil || len(got) != 2 || got[0] != 0.0 || got[1] != "caf\uFFFD" {
		t.Errorf("tab 1: [<b> elements in #messages, binary messages] = %v (%v); want [0 caf\uFFFD]", got, err)
	}
}

// saveArtifact writes data as name in $CPORT_ARTIFACTS, or in a temporary
// directory when it is not set, and logs where.
func saveArtifact(t *testing.T, name string, data []byte) {
	t.Helper()
	dir := os.Getenv("CPORT_ARTIFACTS")
	if dir == "" {
		dir = t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("saved %s", path)
}

// checkNotBlank returns an error unless the PNG image p has at least 3
// colours, none of them on more than 98% of its pixels: a page that did
// not render (a blank or single-colour screenshot) fails.
func checkNotBlank(p []byte) error {
	img, err := png.Decode(bytes.NewReader(p))
	if err != nil {
		return fmt.Errorf("decoding the PNG: %w", err)
	}
	b := img.Bounds()
	if b.Empty() {
		return errors.New("the image is empty")
	}
	counts := make(map[[4]uint32]int)
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, a := img.At(x, y).RGBA()
			counts[[4]uint32{r, g, bl, a}]++
		}
	}
	most := 0
	for _, n := range counts {
		most = max(most, n)
	}
	pixels := b.Dx() * b.Dy()
	if len(counts) < 3 || most*100 > pixels*98 {
		return fmt.Errorf("%v, %d colours, the commonest on %.1f%% of the pixels: blank", b.Size(), len(counts), 100*float64(most)/float64(pixels))
	}
	return nil
}

// TestBrowserReconnect checks that the page reconnects by itself: when its
// server goes, it says it is reconnecting, and when a new server comes up
// on the same address, it connects to it and chats again.
func TestBrowserReconnect(t *testing.T) {
	browser := startBrowser(t)
	ts := startWSChat(t, "127.0.0.1:0")
	addr := ts.WSAddr().String()
	tab := openTab(t, browser, "tab", "http://"+addr+"/")
	say(t, tab, "tab", "before")
	waitMessages(t, tab, "tab", []string{"before"})

	ts.Close()
	waitState(t, tab, "tab", "reconnecting")
	if disabled, err := chromedp.Run(tab, chromedp.Evaluate[bool](`document.getElementById("send").disabled`)); err != nil || !disabled {
		t.Errorf("the send button is enabled (%v) while the page reconnects; want it disabled", err)
	}

	startWSChat(t, addr)
	waitState(t, tab, "tab", "open")
	say(t, tab, "tab", "after")
	waitMessages(t, tab, "tab", []string{"before", "after"})
}
