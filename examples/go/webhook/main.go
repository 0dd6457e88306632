// Webhook is a webhook receiver: it checks that each POST comes from the push server before
// trusting it.
//
//	WEBHOOK_SECRET=… PORT=8000 go run ./webhook
//
// and start the server with WEBHOOK_URL=http://127.0.0.1:8000/ and the same WEBHOOK_SECRET.
// PORT=0 takes any free port; the first line printed says which.
package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"math"
	"net"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"time"
)

const (
	maxBodyBytes  = 1 << 20 // events are small (a client.message is at most a few KiB)
	maxAgeSeconds = 300     // refuse older timestamps: a captured request cannot be replayed later
)

var unixSeconds = regexp.MustCompile(`^\d{1,12}$`)

// verifyWebhook returns "" when the request was signed with secret, else why not.
// rawBody is the body's bytes as received.
func verifyWebhook(secret, timestamp, signature string, rawBody []byte, now time.Time) string {
	if !unixSeconds.MatchString(timestamp) {
		return "X-Webhook-Timestamp is not unix seconds"
	}
	ts, _ := strconv.ParseInt(timestamp, 10, 64)
	if math.Abs(float64(now.Unix()-ts)) > maxAgeSeconds {
		return "X-Webhook-Timestamp is more than 5 minutes off"
	}
	// X-Signature: sha256=<hex HMAC-SHA256(secret, timestamp + "." + raw body)>
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(timestamp + "."))
	mac.Write(rawBody)
	expected := "sha256=" + hex.EncodeToString(mac.Sum(nil))
	// hmac.Equal is constant-time: == would tell an attacker how many leading characters were right
	if !hmac.Equal([]byte(expected), []byte(signature)) {
		return "X-Signature does not match"
	}
	return ""
}

func main() {
	secret := os.Getenv("WEBHOOK_SECRET")
	if secret == "" {
		log.Fatal("WEBHOOK_SECRET must be set (the same as the push server's)")
	}
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes)) // the raw bytes, before json
		if err != nil {
			w.WriteHeader(http.StatusRequestEntityTooLarge)
			return
		}
		if problem := verifyWebhook(secret, r.Header.Get("X-Webhook-Timestamp"), r.Header.Get("X-Signature"), body, time.Now()); problem != "" {
			fmt.Println("webhook rejected:", problem)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		// Now the event can be trusted. The same event may come twice (delivery is at least
		// once): dedupe by event.ID (also in X-Webhook-Id) when that matters.
		var event struct{ ID, Type, UID string }
		if err := json.Unmarshal(body, &event); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		fmt.Printf("webhook verified: %s uid=%s id=%s\n", event.Type, event.UID, event.ID)
		w.WriteHeader(http.StatusNoContent) // any 2xx; anything else is retried
	})

	port := os.Getenv("PORT")
	if port == "" {
		port = "8000"
	}
	listener, err := net.Listen("tcp", "127.0.0.1:"+port)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("webhook receiver listening on http://%s/\n", listener.Addr())
	log.Fatal(http.Serve(listener, nil))
}
