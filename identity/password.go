package identity

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"

	"renkei"
)

// Argon2id parameters (RFC 9106 second recommended option, with 64 MiB): about 60 ms per check on this class of
// machine, which is slow for a guesser and unnoticeable at a login.
const (
	argonTime    = 3
	argonMemory  = 64 * 1024
	argonThreads = 2
	argonKeyLen  = 32
)

// HashPassword returns the argon2id hash of password in PHC string format.
func HashPassword(password string) string {
	salt := make([]byte, 16)
	rand.Read(salt)
	key := argon2.IDKey([]byte(password), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime, argonThreads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key))
}

// CheckPassword reports whether password matches an argon2id hash made by HashPassword (with any parameters).
func CheckPassword(hash, password string) bool {
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false
	}
	var m, t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil || m == 0 || t == 0 || p == 0 || m > 1<<22 || t > 64 {
		return false
	}
	salt, err := base64.RawStdEncoding.DecodeString(parts[4])
	if err != nil {
		return false
	}
	want, err := base64.RawStdEncoding.DecodeString(parts[5])
	if err != nil || len(want) == 0 {
		return false
	}
	got := argon2.IDKey([]byte(password), salt, t, m, p, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1
}

// dummyHash is checked against when a login names no user, so that a wrong login takes as long as a wrong password
// and does not tell which logins exist.
var dummyHash = HashPassword("renkei-no-such-user")

// MinPasswordLength follows NIST SP 800-63B for a password used with a second factor, raised a little: the MHLW
// guideline 6.0 asks for passwords that are hard to guess, and the second factor is mandatory for staff.
const MinPasswordLength = 10

// commonPasswords are refused whatever their length (a short list of the most used; the length rule catches most
// of the rest).
var commonPasswords = map[string]bool{
	"password123": true, "password1234": true, "1234567890": true, "12345678910": true, "qwertyuiop": true, "iloveyou123": true,
	"abcdefghij": true, "abcd123456": true, "passw0rd123": true, "0123456789": true, "1111111111": true, "aaaaaaaaaa": true,
	"renkei12345": true, "hospital123": true, "welcome123": true, "changeme123": true, "administrator": true,
}

// CheckPolicy says why a new password is refused, in words a user understands, or returns nil. The refusal's Code
// (password-short, password-long, password-common, password-repeats, password-personal) names the rule broken.
func CheckPolicy(password, login, name string) error {
	const op = "identity.CheckPolicy"
	if utf8.RuneCountInString(password) < MinPasswordLength {
		return renkei.Errorj(op, renkei.Invalid, "パスワードは%d文字以上にしてください。",
			"the password must be at least %d characters long", MinPasswordLength).WithCode("password-short")
	}
	if utf8.RuneCountInString(password) > 256 {
		return renkei.Errorj(op, renkei.Invalid, "パスワードは256文字以内にしてください。",
			"the password must be at most 256 characters long").WithCode("password-long")
	}
	lower := strings.ToLower(password)
	if commonPasswords[lower] {
		return renkei.Errorj(op, renkei.Invalid, "このパスワードはよく使われているため安全ではありません。別のパスワードにしてください。",
			"this password is among the most used ones; please choose another").WithCode("password-common")
	}
	if distinct(lower) < 4 {
		return renkei.Errorj(op, renkei.Invalid, "パスワードに使われている文字の種類が少なすぎます。いろいろな文字を混ぜてください。",
			"the password repeats too few different characters").WithCode("password-repeats")
	}
	for _, s := range []string{login, strings.Split(login, "@")[0], name} {
		if s = strings.ToLower(strings.TrimSpace(s)); len(s) >= 3 && strings.Contains(lower, s) {
			return renkei.Errorj(op, renkei.Invalid, "ログイン名や氏名を含まないパスワードにしてください。",
				"the password must not contain your login or name").WithCode("password-personal")
		}
	}
	return nil
}

func distinct(s string) int {
	seen := map[rune]bool{}
	for _, r := range s {
		if !unicode.IsSpace(r) {
			seen[r] = true
		}
	}
	return len(seen)
}

// randomToken returns n random bytes as unpadded base64url.
func randomToken(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// hashSecret is how high-entropy secrets (session ids, tokens, recovery codes) are stored: they need no slow hash.
func hashSecret(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// OneTimePassword returns a random password for a first login or an admin reset: 16 characters from an alphabet
// without look-alikes, in groups of four so that it can be read out or printed.
func OneTimePassword() string {
	const alphabet = "abcdefghjkmnpqrstuvwxyz23456789"
	var s strings.Builder
	var b [1]byte
	for n := 0; n < 16; {
		rand.Read(b[:])
		if int(b[0]) >= 256/len(alphabet)*len(alphabet) {
			continue // rejection sampling: no character more likely than another
		}
		if n > 0 && n%4 == 0 {
			s.WriteByte('-')
		}
		s.WriteByte(alphabet[int(b[0])%len(alphabet)])
		n++
	}
	return s.String()
}
