// Push pushes to one user through both push APIs, with net/http from the standard library.
//
//	PUSH_API_URL=http://127.0.0.1:2121 PUSH_SECRET=… PUSH_TO=42 go run ./push
//
// It prints each answer and exits 1 when a push was refused.
package main

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// getenv returns the variable, or def when it is empty.
func getenv(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// answer reads a response's status and body text.
func answer(res *http.Response, err error) (int, string) {
	if err != nil {
		return 0, err.Error() // no answer at all: connection refused, timeout
	}
	defer res.Body.Close()
	text, _ := io.ReadAll(io.LimitReader(res.Body, 1<<20))
	return res.StatusCode, string(text)
}

func main() {
	api := getenv("PUSH_API_URL", "http://127.0.0.1:2121")
	secret := os.Getenv("PUSH_SECRET") // the server's PUSH_SECRET; empty when it has none
	to := getenv("PUSH_TO", "42")
	client := &http.Client{Timeout: 10 * time.Second}

	// 1. The legacy API, as web-msg-sender backends call it: type=publish, to, content.
	//    The page gets `content` on `new_msg`, HTML-escaped by the server.
	//    With PUSH_SECRET on, the least change is one more field: `secret` (in the body, never the URL).
	form := url.Values{"type": {"publish"}, "to": {to}, "content": {"Hello from Go & net/http <3"}}
	if secret != "" {
		form.Set("secret", secret)
	}
	status, text := answer(client.PostForm(api+"/", form))
	fmt.Printf("legacy push: %d %s\n", status, text) // ok (a page is open), offline (none is), fail (refused)
	legacyOK := status == http.StatusOK && text != "fail"

	// 2. The v1 JSON API: the page gets `data` on `message`, as JSON (not escaped: show it as
	//    text). ttl: kept 600 s for the user until a page acks it, so a user offline now gets it
	//    at their next login. Signed: the secret itself never travels, and a signed request
	//    cannot be replayed (the server refuses it twice, or 5 minutes late).
	target := "/api/v1/push" // path and query exactly as sent: part of the signature
	body, _ := json.Marshal(map[string]any{
		"to":   to,
		"data": map[string]any{"text": "Your order has shipped", "order": 17},
		"ttl":  600,
	})
	req, _ := http.NewRequest(http.MethodPost, api+target, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if secret != "" {
		timestamp := strconv.FormatInt(time.Now().Unix(), 10)
		// hex HMAC-SHA256 of: timestamp \n METHOD \n target \n body
		mac := hmac.New(sha256.New, []byte(secret))
		mac.Write([]byte(strings.Join([]string{timestamp, http.MethodPost, target, string(body)}, "\n")))
		req.Header.Set("X-Push-Timestamp", timestamp)
		req.Header.Set("X-Push-Signature", hex.EncodeToString(mac.Sum(nil)))
	}
	status, text = answer(client.Do(req))
	fmt.Printf("v1 push: %d %s\n", status, text) // {"id", "online"/"offline" or counts, "stored"}

	if !legacyOK || status != http.StatusOK {
		os.Exit(1)
	}
}
