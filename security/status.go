// Package security works out the region's security status for its administrators: how the web and DICOM traffic
// is encrypted, who logs in without a second factor, dormant accounts, unused or old API tokens, AE titles that
// connect without TLS, when the audit trail was last verified, whether it reaches a SIEM, and how fresh the backups
// are where the deployment says. Each item is OK, needs attention, or unknown, in Japanese and English words an IT
// person at a hospital understands, with what to do.
package security

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"time"

	"renkei"
	"renkei/atna"
)

// States of an item.
const (
	OK        = "ok"
	Attention = "attention"
	Unknown   = "unknown"
)

// Store is what the status reads (implemented by sqlstore.DB).
type Store interface {
	Accounts(ctx context.Context) ([]renkei.Account, error)
	Tokens(ctx context.Context, institution int64) ([]renkei.APIToken, error)
	Institutions(ctx context.Context) ([]renkei.Institution, error)
	ListAEs(ctx context.Context) ([]renkei.AE, error)
	AEConnections(ctx context.Context) (map[string]renkei.AEConnection, error)
	LastAuditVerification(ctx context.Context) (renkei.AuditVerification, error)
	AuditHead(ctx context.Context) (int64, error)
}

// Policy holds the thresholds. Zero fields take the defaults (DefaultPolicy).
type Policy struct {
	DormantAfter time.Duration // an account unused this long is dormant
	TokenMaxAge  time.Duration // an API token older than this should be replaced
	VerifyEvery  time.Duration // the audit chain should be verified at least this often
	BackupMaxAge time.Duration // the last backup may be this old
}

// DefaultPolicy: 90 days, a year, a week, a day and a few hours (a nightly job that ran late is not yet a problem).
var DefaultPolicy = Policy{DormantAfter: 90 * 24 * time.Hour, TokenMaxAge: 365 * 24 * time.Hour, VerifyEvery: 7 * 24 * time.Hour,
	BackupMaxAge: 26 * time.Hour}

// Config is what the deployment says about itself: the serve flags that shape its security.
type Config struct {
	PublicURL      string // --public-url (or the default http://localhost:PORT)
	HTTP           string // the address --http listens on
	TrustedProxies int    // how many --trusted-proxies are set
	DIMSE          string // the plain DICOM address; "" when off
	DIMSETLS       string // the DICOM TLS address; "" when off
	DIMSEClientCA  bool   // --tls-client-ca: DICOM TLS peers must show a certificate
	BackupMarker   string // --backup-marker: a file the backup job touches after each successful backup; "" unknown
	// Export reports the syslog export's state; nil when --syslog is not set.
	Export func() atna.Status
	Policy Policy
}

// Text is one sentence in both languages of the web app.
type Text struct {
	Ja string `json:"ja"`
	En string `json:"en"`
}

func text(ja, en string, args ...any) Text {
	return Text{Ja: fmt.Sprintf(ja, args...), En: fmt.Sprintf(en, args...)}
}

// Entry is one user, token or AE an item is about.
type Entry struct {
	Name        string     `json:"name"`
	Institution string     `json:"institution,omitempty"`
	Detail      Text       `json:"detail"`
	At          *time.Time `json:"at,omitempty"`
}

// Item is one line of the status.
type Item struct {
	ID      string  `json:"id"`
	State   string  `json:"state"`
	Title   Text    `json:"title"`
	Message Text    `json:"message"`
	Todo    *Text   `json:"todo,omitempty"`
	Entries []Entry `json:"entries,omitempty"`
}

// Report is the whole status.
type Report struct {
	At    time.Time `json:"at"`
	Items []Item    `json:"items"`
}

// Status works out the report at now. The request's own TLS (seenHTTPS: this page came over HTTPS, directly or
// from a trusted proxy) completes what the flags say about the web.
func Status(ctx context.Context, st Store, c Config, now time.Time, seenHTTPS bool) (*Report, error) {
	p := c.Policy
	if p.DormantAfter <= 0 {
		p.DormantAfter = DefaultPolicy.DormantAfter
	}
	if p.TokenMaxAge <= 0 {
		p.TokenMaxAge = DefaultPolicy.TokenMaxAge
	}
	if p.VerifyEvery <= 0 {
		p.VerifyEvery = DefaultPolicy.VerifyEvery
	}
	if p.BackupMaxAge <= 0 {
		p.BackupMaxAge = DefaultPolicy.BackupMaxAge
	}
	r := &Report{At: now}
	r.Items = append(r.Items, httpItem(c, seenHTTPS), dicomItem(c))
	aes, err := aeItem(ctx, st, c)
	if err != nil {
		return nil, err
	}
	accounts, err := st.Accounts(ctx)
	if err != nil {
		return nil, err
	}
	tokens, err := tokenItem(ctx, st, p, now)
	if err != nil {
		return nil, err
	}
	verify, err := verifyItem(ctx, st, p, now)
	if err != nil {
		return nil, err
	}
	export, err := exportItem(ctx, st, c)
	if err != nil {
		return nil, err
	}
	r.Items = append(r.Items, aes, twoFactorItem(accounts), dormantItem(accounts, p, now), tokens, verify, export, backupItem(c, p, now))
	return r, nil
}

func day(t time.Time) string { return t.Local().Format("2006-01-02") }

func days(d time.Duration) int { return int(d / (24 * time.Hour)) }

func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func httpItem(c Config, seenHTTPS bool) Item {
	it := Item{ID: "http-tls", Title: text("Web画面の通信の暗号化（HTTPS）", "Encryption of the web app (HTTPS)")}
	u, _ := url.Parse(c.PublicURL)
	https := u != nil && u.Scheme == "https"
	local := loopback(c.HTTP)
	seen, seenEn := "", ""
	if seenHTTPS {
		seen, seenEn = "この画面もHTTPSで届いています。", " This page itself arrived over HTTPS."
	}
	switch {
	case https && (local || c.TrustedProxies > 0):
		it.State = OK
		it.Message = text("利用者は %s に HTTPS で接続します。暗号化は前段のリバースプロキシが行い、renkei 本体は %s で待ち受けています。",
			"Users connect to %s over HTTPS. A reverse proxy in front handles the encryption; renkei itself listens on %s.", c.PublicURL, c.HTTP)
		it.Message.Ja, it.Message.En = it.Message.Ja+seen, it.Message.En+seenEn
		if !local {
			it.Message.Ja += fmt.Sprintf("%s にはプロキシ以外から接続できないようにしてください（ファイアウォール）。", c.HTTP)
			it.Message.En += fmt.Sprintf(" Make sure nothing but the proxy can reach %s (firewall).", c.HTTP)
		}
	case https:
		it.State = Attention
		it.Message = text("利用者には %s（HTTPS）と案内していますが、renkei 本体は %s で暗号化なしの HTTP をネットワークに公開しており、プロキシの指定（--trusted-proxies）もありません。",
			"Users are sent to %s (HTTPS), but renkei's own port %s speaks unencrypted HTTP on the network, and no proxy is declared (--trusted-proxies).", c.PublicURL, c.HTTP)
		it.Message.Ja, it.Message.En = it.Message.Ja+seen, it.Message.En+seenEn
		it.Todo = &Text{
			Ja: "renkei の HTTP ポートにはプロキシだけが届くようにし（例: --http 127.0.0.1:8080 かファイアウォール）、プロキシのアドレスを --trusted-proxies で指定してください。ログイン回数制限と監査証跡に利用者の本当のアドレスが残るようになります。",
			En: "Let only the proxy reach renkei's HTTP port (e.g. --http 127.0.0.1:8080, or a firewall) and name the proxy with --trusted-proxies, so that login limits and the audit trail see the users' real addresses."}
	case local:
		it.State = OK
		it.Message = text("renkei は %s（このコンピューターの中だけ）で待ち受けています。他のコンピューターからは接続できません（試用・テスト向け）。",
			"renkei listens on %s, inside this computer only: no other computer can connect (a trial or test set-up).", c.HTTP)
	default:
		it.State = Attention
		it.Message = text("Web画面は暗号化なし（%s）でネットワークに公開されています。パスワード、ログイン情報、画像が平文で流れます。",
			"The web app is open to the network without encryption (%s): passwords, login cookies and images cross the network in clear text.", c.PublicURL)
		it.Todo = &Text{
			Ja: "証明書を設定したリバースプロキシ（nginx、Apache、ロードバランサー）を renkei の前に置き、renkei を --public-url https://… --trusted-proxies プロキシのアドレス で起動し、--http はプロキシだけが届くアドレスにしてください。",
			En: "Put a reverse proxy with a certificate (nginx, Apache, a load balancer) in front of renkei; start renkei with --public-url https://… and --trusted-proxies PROXY-ADDRESS, and --http on an address only the proxy reaches."}
	}
	return it
}

func dicomItem(c Config) Item {
	it := Item{ID: "dicom-tls", Title: text("DICOM通信の暗号化", "Encryption of DICOM traffic")}
	cert := Text{Ja: "相手は証明書で確認しています（--tls-client-ca）。", En: " Peers are checked by their certificates (--tls-client-ca)."}
	if !c.DIMSEClientCA {
		cert = Text{Ja: "相手の確認は AE タイトルと接続元アドレスだけです（証明書を求めるには --tls-client-ca）。",
			En: " Peers are identified by AE title and address only (--tls-client-ca requires certificates)."}
	}
	switch {
	case c.DIMSE == "" && c.DIMSETLS == "":
		it.State, it.Message = OK, text("DICOM 通信（DIMSE）は使っていません。", "DICOM networking (DIMSE) is off.")
	case c.DIMSE == "":
		it.State = OK
		it.Message = text("DICOM は TLS（%s）だけで受け付けています。", "DICOM is accepted over TLS only (%s).", c.DIMSETLS)
		it.Message.Ja += cert.Ja
		it.Message.En += cert.En
	case c.DIMSETLS != "":
		it.State = OK
		it.Message = text("DICOM は TLS（%s）と暗号化なし（%s）の両方で受け付けています。暗号化なしで接続している機器は下の項目に出ます。",
			"DICOM is accepted both over TLS (%s) and unencrypted (%s); the devices that still connect unencrypted are listed below.", c.DIMSETLS, c.DIMSE)
		it.Message.Ja += cert.Ja
		it.Message.En += cert.En
	case loopback(c.DIMSE):
		it.State = OK
		it.Message = text("DICOM は暗号化なしですが、このコンピューターの中（%s）だけで受け付けています。",
			"DICOM is unencrypted but accepted inside this computer only (%s).", c.DIMSE)
	default:
		it.State = Attention
		it.Message = text("DICOM は暗号化なし（%s）だけで受け付けています。画像と患者情報が平文でネットワークを流れます。",
			"DICOM is accepted unencrypted only (%s): images and patient data cross the network in clear text.", c.DIMSE)
		it.Todo = &Text{
			Ja: "院外や管理していないネットワークを通るなら、--dimse-tls :2762 と --tls-cert、--tls-key（機器に証明書を求めるなら --tls-client-ca）で DICOM TLS を始め、機器を移してから --dimse off で暗号化なしを止めてください。病院内の閉じたネットワークや renkei ゲートウェイ経由なら許容できる場合もあります。その理由を記録してください。",
			En: "If DICOM crosses networks you do not control, start DICOM TLS with --dimse-tls :2762, --tls-cert and --tls-key (and --tls-client-ca to require device certificates), move the devices to it, then turn unencrypted DICOM off with --dimse off. On a closed hospital network, or through the renkei gateway, it may be acceptable: write down why."}
	}
	return it
}

func aeItem(ctx context.Context, st Store, c Config) (Item, error) {
	it := Item{ID: "ae-tls", Title: text("暗号化せずに接続しているDICOM機器（AEタイトル）", "DICOM devices (AE titles) connecting without encryption")}
	aes, err := st.ListAEs(ctx)
	if err != nil {
		return it, err
	}
	conns, err := st.AEConnections(ctx)
	if err != nil {
		return it, err
	}
	if c.DIMSE == "" {
		it.State = OK
		it.Message = text("暗号化なしの DICOM は受け付けていません。登録されている %d 台はすべて TLS で接続します。",
			"Unencrypted DICOM is off: all %d registered devices must connect over TLS.", len(aes))
		return it, nil
	}
	never := 0
	for _, ae := range aes {
		cn, ok := conns[ae.Title]
		if !ok {
			never++
			continue
		}
		if !cn.TLS {
			at := cn.At
			it.Entries = append(it.Entries, Entry{Name: ae.Title, Institution: ae.Institution, At: &at,
				Detail: text("最後の接続（%s、%s から）は暗号化なし", "last connected unencrypted (%s, from %s)", day(cn.At), cn.Address)})
		}
	}
	if len(it.Entries) == 0 {
		it.State = OK
		it.Message = text("接続した機器はすべて TLS を使っています（まだ一度も接続していない機器: %d 台）。",
			"Every device that has connected used TLS (devices that have never connected: %d).", never)
		return it, nil
	}
	it.State = Attention
	it.Message = text("%d 台の機器が最後の接続で暗号化なしの DICOM を使いました（まだ一度も接続していない機器: %d 台）。",
		"%d devices used unencrypted DICOM when they last connected (devices that have never connected: %d).", len(it.Entries), never)
	tlsAddr := c.DIMSETLS
	if tlsAddr == "" {
		tlsAddr = "--dimse-tls"
	}
	it.Todo = &Text{
		Ja: fmt.Sprintf("これらの機器を DICOM TLS（%s）で接続するよう設定するか、病院内の renkei ゲートウェイ経由で送るようにしてください。", tlsAddr),
		En: fmt.Sprintf("Set these devices up to use DICOM TLS (%s), or let them send through a renkei gateway inside the hospital.", tlsAddr)}
	return it, nil
}

func lastSeen(a renkei.Account) Text {
	if a.LastLogin == nil {
		return text("一度もログインしていません（%s 作成）", "has never logged in (created %s)", day(a.CreatedAt))
	}
	return text("最後のログイン %s", "last login %s", day(*a.LastLogin))
}

func twoFactorItem(accounts []renkei.Account) Item {
	it := Item{ID: "two-factor", Title: text("二要素認証を設定していない利用者", "Users without two-factor login")}
	patients := 0
	for _, a := range accounts {
		if a.Disabled || a.SecondFactor() {
			continue
		}
		if !a.Role.Staff() {
			patients++
			continue
		}
		at := a.CreatedAt
		if a.LastLogin != nil {
			at = *a.LastLogin
		}
		it.Entries = append(it.Entries, Entry{Name: a.Login, Institution: a.Institution, At: &at, Detail: lastSeen(a)})
	}
	var note Text
	if patients > 0 {
		note = text("（患者のアカウント %d 件は任意のため含めていません）", " (%d patient accounts, for whom it is optional, are not counted.)", patients)
	}
	if len(it.Entries) == 0 {
		it.State = OK
		it.Message.Ja, it.Message.En = "職員のアカウントはすべて認証アプリかセキュリティキーを設定済みです。"+note.Ja, "Every staff account has an authenticator app or a security key."+note.En
		return it
	}
	it.State = Attention
	it.Message.Ja = fmt.Sprintf("%d 件の職員アカウントに二要素認証がありません。最初のログインを済ませていないため、まだ使えない状態です。", len(it.Entries)) + note.Ja
	it.Message.En = fmt.Sprintf("%d staff accounts have no second factor: they have not finished their first login and cannot use renkei yet.", len(it.Entries)) + note.En
	it.Todo = &Text{
		Ja: "本人に最初のログインを済ませてもらってください（その場で認証アプリかセキュリティキーを登録します）。不要なアカウントは無効にしてください: renkei admin user disable ログイン名",
		En: "Ask each person to finish their first login, which enrols an authenticator app or a security key. Disable accounts nobody needs: renkei admin user disable LOGIN"}
	return it
}

func dormantItem(accounts []renkei.Account, p Policy, now time.Time) Item {
	n := days(p.DormantAfter)
	it := Item{ID: "dormant", Title: text("長期間使われていないアカウント", "Dormant accounts")}
	for _, a := range accounts {
		if a.Disabled || !a.Role.Staff() {
			continue
		}
		last := a.CreatedAt
		if a.LastLogin != nil {
			last = *a.LastLogin
		}
		if now.Sub(last) < p.DormantAfter {
			continue
		}
		it.Entries = append(it.Entries, Entry{Name: a.Login, Institution: a.Institution, At: &last, Detail: lastSeen(a)})
	}
	if len(it.Entries) == 0 {
		it.State = OK
		it.Message = text("%d 日以上ログインのない職員アカウントはありません。", "No staff account has gone %d days without a login.", n)
		return it
	}
	it.State = Attention
	it.Message = text("%d 件の職員アカウントが %d 日以上ログインしていません。退職や異動で使われなくなったアカウントは乗っ取られても気づかれません。",
		"%d staff accounts have not logged in for %d days or more. An account left behind by someone who moved on can be taken over unnoticed.", len(it.Entries), n)
	it.Todo = &Text{
		Ja: "各施設にその人がまだ在籍しているか確認し、不要なアカウントは無効にしてください: renkei admin user disable ログイン名（基準の日数は --dormant-days）",
		En: "Ask each institution whether the person still works there, and disable accounts no longer needed: renkei admin user disable LOGIN (the number of days is --dormant-days)."}
	return it
}

func tokenItem(ctx context.Context, st Store, p Policy, now time.Time) (Item, error) {
	it := Item{ID: "tokens", Title: text("APIトークン（ゲートウェイ・スクリプト用）", "API tokens (gateways, scripts)")}
	tokens, err := st.Tokens(ctx, 0)
	if err != nil {
		return it, err
	}
	insts, err := st.Institutions(ctx)
	if err != nil {
		return it, err
	}
	names := map[int64]string{}
	for _, in := range insts {
		names[in.PK] = in.ID
	}
	active := 0
	for _, t := range tokens {
		if t.RevokedAt != nil || (t.ExpiresAt != nil && !now.Before(*t.ExpiresAt)) {
			continue
		}
		active++
		name := fmt.Sprintf("%s (#%d)", t.Name, t.PK)
		created := t.CreatedAt
		switch {
		case t.LastUsed == nil:
			it.Entries = append(it.Entries, Entry{Name: name, Institution: names[t.Institution], At: &created,
				Detail: text("%s に作成され、一度も使われていません", "created %s and never used", day(t.CreatedAt))})
		case now.Sub(t.CreatedAt) > p.TokenMaxAge:
			it.Entries = append(it.Entries, Entry{Name: name, Institution: names[t.Institution], At: &created,
				Detail: text("%s に作成（%d 日を超えています）、最後の利用 %s", "created %s (more than %d days ago), last used %s",
					day(t.CreatedAt), days(p.TokenMaxAge), day(*t.LastUsed))})
		}
	}
	if len(it.Entries) == 0 {
		it.State = OK
		it.Message = text("有効なトークン %d 件はすべて使われており、%d 日以内に作られたものです。",
			"All %d active tokens are in use and less than %d days old.", active, days(p.TokenMaxAge))
		return it, nil
	}
	it.State = Attention
	it.Message = text("有効なトークン %d 件のうち %d 件が、一度も使われていないか %d 日より古いものです。漏れたトークンは気づかれずに使われ続けます。",
		"%[2]d of %[1]d active tokens have never been used or are more than %[3]d days old. A leaked token goes on working unnoticed.",
		active, len(it.Entries), days(p.TokenMaxAge))
	it.Todo = &Text{
		Ja: "使う予定のないトークンは取り消してください: renkei admin token revoke 番号。古いトークンは新しいトークンを作り（token add）、ゲートウェイやスクリプトを更新してから古い方を取り消してください。",
		En: "Revoke tokens nobody is going to use: renkei admin token revoke NUMBER. Replace old ones: make a new token (token add), update the gateway or script, then revoke the old one."}
	return it, nil
}

func verifyItem(ctx context.Context, st Store, p Policy, now time.Time) (Item, error) {
	it := Item{ID: "audit-verify", Title: text("監査証跡の検証", "Verification of the audit trail")}
	v, err := st.LastAuditVerification(ctx)
	if renkei.ErrorKind(err) == renkei.NotFound {
		it.State = Attention
		it.Message = text("監査証跡（誰がいつ何を見たかの記録）が改ざんされていないか、まだ一度も検証されていません。",
			"Nobody has yet checked that the audit trail (who looked at what, when) has not been tampered with.")
		it.Todo = &Text{
			Ja: "「今すぐ検証」を押すか、サーバーで renkei admin audit verify を実行してください。毎日 cron などで実行するようにしてください。",
			En: "Press \"Verify now\", or run renkei admin audit verify on the server; schedule it daily (cron)."}
		return it, nil
	}
	if err != nil {
		return it, err
	}
	at := v.At
	it.Entries = []Entry{{Name: v.By, At: &at, Detail: text("%s に %d 件を検証、問題 %d 件", "%s: %d events checked, %d problems", day(v.At), v.Events, v.Problems)}}
	head, err := st.AuditHead(ctx)
	if err != nil {
		return it, err
	}
	switch {
	case v.Problems > 0:
		it.State = Attention
		it.Message = text("%s の検証で監査証跡に %d 件の問題が見つかりました。最初の問題: %s",
			"The check of %s found %d problems in the audit trail. The first: %s", day(v.At), v.Problems, v.FirstProblem)
		it.Todo = &Text{
			Ja: "セキュリティ事故として扱ってください。データベースと audit-key の複製を保全し、SIEM に送られた記録と比べ、地域の情報セキュリティ責任者に連絡してください。",
			En: "Treat it as a security incident: keep a copy of the database and the audit key, compare with the copy sent to the SIEM, and tell the region's security officer."}
	case now.Sub(v.At) > p.VerifyEvery:
		it.State = Attention
		it.Message = text("最後の検証は %s（%d 日前）で、そのときは問題ありませんでした。その後 %d 件の記録が増えています。",
			"The last check was on %s (%d days ago) and found nothing wrong; %d events have been added since.", day(v.At), days(now.Sub(v.At)), head-v.LastSeq)
		it.Todo = &Text{
			Ja: fmt.Sprintf("「今すぐ検証」を押すか renkei admin audit verify を実行し、少なくとも %d 日ごとに自動で実行されるようにしてください。", days(p.VerifyEvery)),
			En: fmt.Sprintf("Press \"Verify now\" or run renkei admin audit verify, and have it run automatically at least every %d days.", days(p.VerifyEvery))}
	default:
		it.State = OK
		it.Message = text("%s に %s が検証し、%d 件の記録に改ざんはありませんでした。", "Checked on %[1]s by %[2]s: the %[3]d events are intact.", day(v.At), v.By, v.Events)
	}
	return it, nil
}

func exportItem(ctx context.Context, st Store, c Config) (Item, error) {
	it := Item{ID: "audit-export", Title: text("監査証跡のSIEMへの送信", "Audit trail sent to a SIEM")}
	if c.Export == nil {
		it.State = Attention
		it.Message = text("監査証跡はこのサーバーの中にしかありません。サーバーとその鍵を手に入れた人は、外に写しがない限り記録を書き換えられます。",
			"The audit trail exists on this server only: whoever obtains the server and its key could rewrite it, unless a copy is kept elsewhere.")
		it.Todo = &Text{
			Ja: "地域の SIEM または syslog サーバーに送るよう、renkei を --syslog tls://ホスト:6514 --syslog-ca CA証明書 で起動してください（IHE ATNA 形式）。",
			En: "Send it to the region's SIEM or syslog server: start renkei with --syslog tls://HOST:6514 --syslog-ca CA-FILE (IHE ATNA format)."}
		return it, nil
	}
	s := c.Export()
	head, err := st.AuditHead(ctx)
	if err != nil {
		return it, err
	}
	waiting := max(head-s.Delivered, 0)
	switch {
	case s.Connected:
		it.State = OK
		it.Message = text("%[1]s に送信中です。%[3]d 件中 %[2]d 件を送信済みです。", "Sending to %[1]s: %[2]d of %[3]d events delivered.", s.Addr, s.Delivered, head)
	default:
		it.State = Attention
		since := ""
		if !s.LastErrorAt.IsZero() {
			since = s.LastErrorAt.Local().Format("2006-01-02 15:04")
		}
		it.Message = text("%s に接続できません（%s から。%s）。%d 件が送信待ちで、接続が戻れば順に送られます。",
			"Cannot reach %s (since %s: %s). %d events wait and will be sent in order once it is back.", s.Addr, since, s.LastError, waiting)
		it.Todo = &Text{
			Ja: "SIEM・syslog サーバーが動いているか、ファイアウォールと証明書（--syslog-ca）を確認してください。",
			En: "Check that the SIEM or syslog server is running, and the firewall and certificates (--syslog-ca)."}
	}
	return it, nil
}

func backupItem(c Config, p Policy, now time.Time) Item {
	it := Item{ID: "backup", Title: text("バックアップ", "Backups")}
	todo := &Text{
		Ja: "バックアップの仕組みに、成功するたびにファイルを更新（touch）させ、renkei を --backup-marker そのファイル で起動してください。少なくとも1つの写しはネットワークから切り離し、ランサムウェアが届かない所に保管してください（医療情報システムの安全管理に関するガイドライン 第6.0版）。",
		En: "Have the backup job touch a file after each successful backup and start renkei with --backup-marker FILE. Keep at least one copy off the network, where ransomware cannot reach it (MHLW guideline 6.0)."}
	if c.BackupMarker == "" {
		it.State, it.Todo = Unknown, todo
		it.Message = text("renkei にはデータフォルダーがいつバックアップされたか分かりません（この構成では知らされていません）。",
			"renkei does not know when its data folder was last backed up: this deployment does not tell it.")
		return it
	}
	fi, err := os.Stat(c.BackupMarker)
	if err != nil {
		it.State, it.Todo = Attention, todo
		it.Message = text("バックアップの記録ファイル %s がありません。成功したバックアップが一度も記録されていません。",
			"The backup marker %s does not exist: no successful backup has been recorded.", c.BackupMarker)
		return it
	}
	at := fi.ModTime()
	it.Entries = []Entry{{Name: c.BackupMarker, At: &at, Detail: text("最後の成功 %s", "last success %s", at.Local().Format("2006-01-02 15:04"))}}
	if now.Sub(at) > p.BackupMaxAge {
		it.State, it.Todo = Attention, todo
		it.Message = text("最後に成功したバックアップは %s（%.0f 時間前）です。", "The last successful backup was at %s (%.0f hours ago).",
			at.Local().Format("2006-01-02 15:04"), now.Sub(at).Hours())
		return it
	}
	it.State = OK
	it.Message = text("最後に成功したバックアップは %s です。", "The last successful backup was at %s.", at.Local().Format("2006-01-02 15:04"))
	return it
}
