package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"os"
	"regexp"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	"renkei/internal/dicomtest"
)

// apiClient calls renkei's HTTP API as a browser would after logging in: with the session cookie and, on
// state-changing requests, the session's CSRF token. With token set it sends a bearer API token instead.
type apiClient struct {
	base, cookie, csrf, token string
}

// login logs in with a password and the TOTP code of the authenticator key, the two steps the UI makes.
func login(t *testing.T, base, user, password, totpKey string) *apiClient {
	t.Helper()
	c := &apiClient{base: base}
	var st struct {
		Next      string `json:"next"`
		CSRFToken string `json:"csrfToken"`
	}
	if code := c.do(t, "POST", "/api/login", map[string]string{"login": user, "password": password}, &st); code != http.StatusOK {
		t.Fatalf("login %s: %d", user, code)
	}
	if st.Next != "second-factor" {
		t.Fatalf("after the password: next %q, want second-factor", st.Next)
	}
	c.csrf = st.CSRFToken
	code, err := totp.GenerateCode(totpKey, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if status := c.do(t, "POST", "/api/login/second-factor", map[string]string{"factor": "totp", "code": code}, &st); status != http.StatusOK || st.Next != "done" {
		t.Fatalf("second factor for %s: %d, next %q", user, status, st.Next)
	}
	c.csrf = st.CSRFToken
	return c
}

// do sends a JSON request and decodes a JSON answer into out; it returns the status.
func (c *apiClient) do(t *testing.T, method, path string, body, out any) int {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if c.cookie != "" {
		req.Header.Set("Cookie", "renkei_session="+c.cookie)
	}
	if c.csrf != "" && method != "GET" {
		req.Header.Set("X-CSRF-Token", c.csrf)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	for _, ck := range resp.Cookies() {
		if ck.Name == "renkei_session" {
			c.cookie = ck.Value
		}
	}
	if out != nil && resp.StatusCode < 300 {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
	}
	return resp.StatusCode
}

func (c *apiClient) getJSON(t *testing.T, path string, out any) {
	t.Helper()
	if code := c.do(t, "GET", path, nil, out); code != http.StatusOK {
		t.Fatalf("GET %s: %d", path, code)
	}
}

// bearer adds an API token to every request.
type bearer struct {
	token string
	next  http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.next.RoundTrip(r)
}

// provisionToken creates, with `renkei admin` as a region's script would, a clinic and a read-write API token for
// it in the data folder, and returns the token.
func provisionToken(t *testing.T, data string) string {
	t.Helper()
	var out bytes.Buffer
	for _, args := range [][]string{
		{"admin", "institution", "add", "test-clinic", "--name", "試験クリニック", "--kind", "clinic"},
		{"admin", "token", "add", "test-client", "--institution", "test-clinic", "--write"},
	} {
		out.Reset()
		if code := Main(context.Background(), append(args, "--data", data), &out, &out); code != 0 {
			t.Fatalf("%v: %s", args, out.String())
		}
	}
	m := regexp.MustCompile(`(?m)^(rk_\S+)$`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("token add printed no token: %s", out.String())
	}
	return m[1]
}

// ctBytes writes a synthetic CT instance to path (dicomtest.CT) and returns its bytes, as a modality would send them.
func ctBytes(t *testing.T, path string, o dicomtest.CTOptions) []byte {
	t.Helper()
	if err := dicomtest.CT(path, o); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// stow sends files in one STOW-RS request to url (a …/studies endpoint) and reports any answer but 200 with its
// body.
func stow(client *http.Client, url string, files ...[]byte) error {
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for _, f := range files {
		w, _ := mw.CreatePart(textproto.MIMEHeader{"Content-Type": {"application/dicom"}})
		w.Write(f)
	}
	mw.Close()
	req, err := http.NewRequest(http.MethodPost, url, &body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", `multipart/related; type="application/dicom"; boundary=`+mw.Boundary())
	req.Header.Set("Accept", "application/dicom+json")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("STOW-RS: %s: %s", resp.Status, b)
	}
	return nil
}
