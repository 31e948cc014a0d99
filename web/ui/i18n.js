// Every string of the web app, in Japanese (the default) and English.

const ja = {
  'app.title': 'renkei 地域医療連携',
  'nav.studies': '検査一覧', 'nav.upload': '画像の取り込み', 'nav.shares': '共有',
  'upload.title': '画像の取り込み', 'upload.intro': 'CD-ROM・USBメモリはフォルダごと選んでください。ファイルやzipも、ここに置くだけで取り込めます。',
  'upload.drop': 'ここにファイル・フォルダ・zipを置く', 'upload.folder': 'フォルダを選ぶ(CD-ROM・USB)', 'upload.files': 'ファイルを選ぶ',
  'upload.file': 'ファイル', 'upload.progress': '進み具合', 'upload.result': '結果', 'upload.waiting': '待機中',
  'upload.stored': '保存しました', 'upload.duplicate': 'すでに保存されています(重複)', 'upload.refused': '取り込めませんでした',
  'upload.summary': '{n}件中 保存 {stored}件・重複 {duplicate}件・取り込めず {refused}件',
  'reason.not-dicom': 'DICOM画像ではありません(文書や説明ファイルなど)', 'reason.dicomdir': 'CDの目次ファイル(画像ではありません)',
  'reason.incomplete': '患者IDや検査番号など必要な項目が欠けています', 'reason.conflict': '同じ画像番号で内容の違う画像がすでにあります',
  'reason.no-space': 'サーバーの容量が足りません。管理者に連絡してください', 'reason.too-large': 'ファイルが大きすぎます',
  'reason.unsafe-path': 'zipの中の場所が不正です(安全のため開きません)', 'reason.symlink': 'zipの中のリンクは開きません',
  'reason.zip-bomb': '展開すると異常に大きくなるzipです(安全のため開きません)', 'reason.bad-zip': 'zipが壊れているか、対応していない形式です',
  'reason.truncated': 'ファイルが途中で切れています(CDの読み取りエラーかもしれません)', 'reason.unlisted': 'CDの目次にあるのに見つかりません(CDが読めない可能性があります)', 'reason.forbidden': '取り込む権限がありません', 'reason.network': 'サーバーに接続できませんでした', 'reason.failed': '保存できませんでした', 'nav.breakglass': '緊急閲覧', 'nav.admin': '管理',
  'nav.my.studies': '私の検査', 'nav.my.log': '閲覧の記録', 'nav.help': 'ヘルプ',
  'help.title': 'renkei の使い方', 'help.intro': 'よく使う操作を順に説明します。分からないときは、施設の地域連携室か管理者にお尋ねください。',
  'help.login.title': 'ログイン', 'help.login.text': 'ログイン名とパスワードを入れ、次に認証アプリの6桁の数字(またはセキュリティキー)で確認します。初めてのときは、配布されたパスワードを変え、認証アプリかキーを設定します。',
  'help.search.title': '検査を探す', 'help.search.text': '「検査一覧」で患者の氏名を漢字・かな・カタカナ・ローマ字のどれかで入れて「検索」を押します。全角・半角の違いは気にしなくてかまいません。生年月日や検査日でも絞り込めます。',
  'help.view.title': '画像を見る', 'help.view.text': '一覧の「画像を見る」を押すと画像が開きます。マウスのホイールか上下の矢印キーでスライスを動かし、ドラッグで濃度を調整します。「肺野」「縦隔」などのボタンでも変えられます。距離・角度・関心領域の計測もできます。',
  'help.import.title': 'CD・USBの画像を取り込む', 'help.import.text': '「画像の取り込み」で「フォルダを選ぶ」を押し、CDやUSBメモリのドライブを選びます。1枚ずつ結果が表示され、取り込めなかったものは理由が出ます。',
  'help.share.title': '他の施設と共有する', 'help.share.text': '一覧の「共有する」を押し、共有先の施設と目的(紹介など)を選びます。患者さんの同意が記録されていないと共有できません。共有はいつでも「共有」の画面でやめられます。',
  'help.emergency.title': '緊急閲覧', 'help.emergency.text': '救急で、共有されていない患者のデータがすぐに必要なときだけ使います。生年月日と氏名、理由を入れます。閲覧はすべて記録され、患者の施設の管理者が確認します。',
  'tour.title': 'はじめての方へ(4つのポイント)', 'tour.next': '次へ', 'tour.skip': '閉じる',
  'tour.search': '① 患者の氏名は漢字でも、かなでも、ローマ字でも探せます。全角・半角も気にしなくて大丈夫です。',
  'tour.view': '② 一覧の「画像を見る」で画像が開きます。ホイールでスライス送り、ドラッグで濃度調整です。',
  'tour.import': '③ 紹介状についてきたCDは「画像の取り込み」でフォルダごと取り込めます。',
  'tour.share': '④ 「共有する」で他の施設に画像を見てもらえます。すべての閲覧は記録されます。',
  'lang.switch': 'English', 'logout': 'ログアウト', 'logout.everywhere': 'すべての端末からログアウト',
  'login.title': 'ログイン', 'login.name': 'ログイン名', 'login.password': 'パスワード', 'login.submit': 'ログイン',
  'login.second': '2段階目の確認', 'login.totp': '認証アプリに表示されている6桁の数字', 'login.totp.submit': '確認する',
  'login.key': 'セキュリティキーを使う', 'login.key.hint': 'キーを差し込み、光ったら触れてください。',
  'login.recovery': '予備コードを使う', 'login.recovery.code': '予備コード',
  'enrol.title': '2段階目の確認を設定します', 'enrol.intro': 'ログインには、パスワードに加えて「認証アプリ」か「セキュリティキー」が必要です。',
  'enrol.app': '認証アプリ(スマートフォン)を使う', 'enrol.app.scan': '認証アプリでこのQRコードを読み取り、表示された6桁の数字を入力してください。',
  'enrol.app.key': '読み取れないときは、このキーを入力してください:', 'enrol.key': 'セキュリティキーを使う(スマートフォンが使えない病棟向け)',
  'enrol.key.name': 'キーの名前(例: 病棟の鍵)',
  'enrol.codes': '予備コード', 'enrol.codes.hint': '認証アプリやキーをなくしたときに使います。印刷して安全な場所に保管してください。各コードは1回だけ使えます。',
  'enrol.continue': '次へ',
  'password.title': 'パスワードを変更してください', 'password.hint': '10文字以上。ログイン名や氏名を含めないでください。',
  'password.current': '今のパスワード(配布されたもの)', 'password.new': '新しいパスワード', 'password.again': 'もう一度',
  'password.mismatch': '新しいパスワードが一致しません。', 'password.submit': '変更する',
  'studies.title': '検査一覧', 'search.name': '患者氏名(漢字・かな・ローマ字)', 'search.id': '患者ID', 'search.birth': '生年月日',
  'search.from': '検査日(から)', 'search.to': '検査日(まで)', 'search.modality': 'モダリティ', 'search.institution': '施設',
  'search.any': 'すべて', 'search.submit': '検索', 'search.clear': 'クリア',
  'col.date': '検査日', 'col.patient': '患者', 'col.study': '検査内容', 'col.modality': '種類', 'col.images': '画像',
  'col.institution': '施設', 'col.access': '閲覧の根拠',
  'badge.own': '自施設', 'badge.shared': '共有', 'badge.breakglass': '緊急閲覧',
  'studies.none': '該当する検査はありません。', 'page.prev': '前へ', 'page.next': '次へ', 'page.n': '{from}〜{to}件目',
  'shared.by': '{by} が共有({purpose})', 'shared.until': '{date}まで',
  'purpose.referral': '紹介', 'purpose.emergency': '救急', 'purpose.consult': '相談', 'purpose.second-opinion': 'セカンドオピニオン',
  'purpose.break-glass': '緊急閲覧',
  'study.share': '共有する', 'study.patient': '患者の経過', 'study.view': '画像を見る',
  'preset.brain': '脳', 'preset.subdural': '硬膜下', 'preset.lung': '肺野', 'preset.mediastinum': '縦隔', 'preset.abdomen': '腹部',
  'preset.bone': '骨', 'viewer.invert': '白黒反転', 'viewer.reset': 'リセット',
  'compare.with': '過去の検査と比較:', 'compare.sync': 'スクロールを連動させる', 'viewer.rotate': '90°回転', 'viewer.flip': '左右反転', 'tool.stack': 'スライス送り', 'viewer.play': '▶ 再生', 'viewer.pause': '⏸ 停止', 'tool.wl': '濃度調整', 'tool.length': '距離', 'tool.angle': '角度', 'tool.roi': '関心領域', 'tool.clear': '計測を消す',
  'measure.detector': '(検出器面での値)', 'measure.pixels': '(画素数:寸法情報なし)', 'measure.mean': '平均', 'sex.M': '男', 'sex.F': '女', 'sex.O': 'その他',
  'patient.title': '{name} さんの検査', 'patient.born': '生年月日',
  'share.title': '患者のデータを共有する', 'share.to': '共有先の施設', 'share.purpose': '目的', 'share.days': '期間(日)',
  'share.reason': '理由・メモ', 'share.scope': '対象', 'share.scope.all': 'この患者のすべての検査', 'share.scope.one': 'この検査だけ',
  'share.submit': '共有する', 'share.done': '共有しました。', 'share.cancel': 'やめる',
  'share.consent': 'この患者の同意が記録されていません。同意書を記録してから共有してください。',
  'shares.title': '共有', 'shares.in': '自施設に共有されたもの', 'shares.out': '自施設が共有したもの', 'shares.none': 'ありません。',
  'shares.revoke': '共有をやめる', 'shares.revoked': '取り消し済み', 'shares.expired': '期限切れ', 'shares.patient': '患者',
  'shares.from': '共有元', 'shares.to': '共有先', 'shares.purpose': '目的', 'shares.until': '期限', 'shares.by': '共有した人',
  'bg.title': '緊急閲覧', 'bg.warning': '共有も同意もない患者のデータを、救急の必要があるときだけ開けます。すべての閲覧は記録され、患者の施設の管理者が確認します。',
  'bg.birth': '生年月日(必須)', 'bg.name': '氏名(漢字・かな)', 'bg.id': 'または患者ID', 'bg.reason': '理由(必須。例: 救急搬送、意識障害)',
  'bg.submit': '緊急閲覧する', 'bg.done': '{n}件の記録を{hours}時間開きました。検査一覧に赤で表示されます。', 'bg.none': '該当する患者が見つかりません。',
  'admin.title': '管理', 'admin.reviews': '緊急閲覧の確認待ち', 'admin.review.note': '確認結果', 'admin.review.submit': '確認済みにする',
  'admin.audit': '監査証跡(最近の200件)', 'audit.time': '日時', 'audit.actor': '誰が', 'audit.action': '操作', 'audit.patient': '患者',
  'audit.detail': '内容', 'audit.outcome': '結果',
  'my.studies': '私の検査', 'my.log': '私のデータを見た記録', 'my.log.hint': 'どの施設の、どの職種の人が、いつ、何のために見たかを表示します。',
  'log.institution': '施設', 'log.role': '職種', 'log.action': '操作', 'log.purpose': '目的', 'log.self': '(ご本人)',
  'role.physician': '医師', 'role.radiologist': '放射線科医', 'role.nurse': '看護師', 'role.clerk': '地域連携室',
  'role.institution-admin': '施設管理者', 'role.region-admin': '地域管理者', 'role.patient': '患者',
  'action.query': '検索で表示', 'action.read': '画像を閲覧', 'action.store': '保存', 'action.delete': '削除', 'action.share': '共有',
  'action.login': 'ログイン', 'action.logout': 'ログアウト', 'action.admin': '管理操作', 'action.break-glass': '緊急閲覧',
  'action.denied': '拒否', 'action.revoke': '取り消し', 'action.restore': '復元',
  'error.network': 'サーバーに接続できません。ネットワークを確認してください。', 'loading': '読み込み中…',
};

const en = {
  'app.title': 'renkei regional network',
  'nav.studies': 'Studies', 'nav.upload': 'Import images', 'nav.shares': 'Shares',
  'upload.title': 'Import images', 'upload.intro': 'Choose a CD-ROM or USB stick as a folder. Files and zips can simply be dropped here.',
  'upload.drop': 'Drop files, folders or zips here', 'upload.folder': 'Choose a folder (CD-ROM, USB)', 'upload.files': 'Choose files',
  'upload.file': 'File', 'upload.progress': 'Progress', 'upload.result': 'Result', 'upload.waiting': 'waiting',
  'upload.stored': 'stored', 'upload.duplicate': 'already stored (duplicate)', 'upload.refused': 'not imported',
  'upload.summary': '{n} files: {stored} stored, {duplicate} duplicates, {refused} not imported',
  'reason.not-dicom': 'not a DICOM image (a document or a viewer program file)', 'reason.dicomdir': "the CD's index (not an image)",
  'reason.incomplete': 'a required item such as the patient ID or study number is missing', 'reason.conflict': 'an image with the same number but other content is already stored',
  'reason.no-space': 'the server is out of space; please tell the administrator', 'reason.too-large': 'the file is too large',
  'reason.unsafe-path': 'an unsafe path inside the zip (not opened)', 'reason.symlink': 'a link inside the zip (not opened)',
  'reason.zip-bomb': 'a zip that would expand enormously (not opened)', 'reason.bad-zip': 'a damaged or unsupported zip',
  'reason.truncated': 'the file is cut short (perhaps the CD could not be read)', 'reason.unlisted': "listed in the CD's index but not found (perhaps the CD cannot be read)", 'reason.forbidden': 'you may not import images', 'reason.network': 'the server could not be reached', 'reason.failed': 'could not be stored', 'nav.breakglass': 'Emergency access', 'nav.admin': 'Admin',
  'nav.my.studies': 'My studies', 'nav.my.log': 'Who looked', 'nav.help': 'Help',
  'help.title': 'How to use renkei', 'help.intro': "The usual tasks, one by one. If something is unclear, ask your institution's liaison office or administrator.",
  'help.login.title': 'Logging in', 'help.login.text': 'Enter your login name and password, then the 6-digit code of your authenticator app (or use your security key). The first time, change the password you were given and set up an app or a key.',
  'help.search.title': 'Finding studies', 'help.search.text': "In Studies, type the patient's name in kanji, kana or Latin letters and press Search; full- or half-width does not matter. Birth date and study dates narrow it down.",
  'help.view.title': 'Viewing images', 'help.view.text': 'View images opens the study. The mouse wheel or the arrow keys move through the slices; dragging changes the window, and the Lung, Mediastinum… buttons set it. Length, angle and ROI measure.',
  'help.import.title': 'Importing a CD or USB stick', 'help.import.text': 'In Import images, press Choose a folder and choose the CD or USB drive. Each file shows its result; what was not imported says why.',
  'help.share.title': 'Sharing with another institution', 'help.share.text': "Press Share in the list, choose the institution and the purpose (referral…). The patient's consent must be recorded first. Shares can be stopped at any time on the Shares page.",
  'help.emergency.title': 'Emergency access', 'help.emergency.text': "Only in an emergency, for a patient whose data was not shared: enter the birth date, the name and the reason. Every look is recorded and reviewed by the patient's institution.",
  'tour.title': 'Welcome (4 things to know)', 'tour.next': 'Next', 'tour.skip': 'Close',
  'tour.search': '1. Find patients by name in kanji, kana or Latin letters, full- or half-width.',
  'tour.view': '2. View images opens the study: wheel to move through slices, drag to change the window.',
  'tour.import': '3. A CD that came with a referral letter is imported folder and all in Import images.',
  'tour.share': '4. Share lets another institution see the images. Every look is recorded.',
  'lang.switch': '日本語', 'logout': 'Log out', 'logout.everywhere': 'Log out everywhere',
  'login.title': 'Log in', 'login.name': 'Login name', 'login.password': 'Password', 'login.submit': 'Log in',
  'login.second': 'Second step', 'login.totp': 'The 6-digit code in your authenticator app', 'login.totp.submit': 'Confirm',
  'login.key': 'Use a security key', 'login.key.hint': 'Insert your key and touch it when it blinks.',
  'login.recovery': 'Use a recovery code', 'login.recovery.code': 'Recovery code',
  'enrol.title': 'Set up your second step', 'enrol.intro': 'Logging in needs your password and an authenticator app or a security key.',
  'enrol.app': 'Use an authenticator app (smartphone)', 'enrol.app.scan': 'Scan this QR code with your authenticator app and enter the 6-digit code it shows.',
  'enrol.app.key': 'If it cannot scan, type this key:', 'enrol.key': 'Use a security key (for wards without phones)',
  'enrol.key.name': 'Name of the key (e.g. ward key)',
  'enrol.codes': 'Recovery codes', 'enrol.codes.hint': 'For when you lose your app or key. Print them and keep them safe. Each code works once.',
  'enrol.continue': 'Continue',
  'password.title': 'Please change your password', 'password.hint': 'At least 10 characters, without your login or name.',
  'password.current': 'Current password (the one you were given)', 'password.new': 'New password', 'password.again': 'Again',
  'password.mismatch': 'The new passwords differ.', 'password.submit': 'Change',
  'studies.title': 'Studies', 'search.name': 'Patient name (kanji, kana or Latin)', 'search.id': 'Patient ID', 'search.birth': 'Birth date',
  'search.from': 'Study date from', 'search.to': 'Study date to', 'search.modality': 'Modality', 'search.institution': 'Institution',
  'search.any': 'Any', 'search.submit': 'Search', 'search.clear': 'Clear',
  'col.date': 'Date', 'col.patient': 'Patient', 'col.study': 'Study', 'col.modality': 'Modality', 'col.images': 'Images',
  'col.institution': 'Institution', 'col.access': 'Access',
  'badge.own': 'Own', 'badge.shared': 'Shared', 'badge.breakglass': 'Emergency',
  'studies.none': 'No matching studies.', 'page.prev': 'Previous', 'page.next': 'Next', 'page.n': '{from}–{to}',
  'shared.by': 'shared by {by} ({purpose})', 'shared.until': 'until {date}',
  'purpose.referral': 'referral', 'purpose.emergency': 'emergency', 'purpose.consult': 'consult', 'purpose.second-opinion': 'second opinion',
  'purpose.break-glass': 'emergency access',
  'study.share': 'Share', 'study.patient': 'Patient history', 'study.view': 'View images',
  'preset.brain': 'Brain', 'preset.subdural': 'Subdural', 'preset.lung': 'Lung', 'preset.mediastinum': 'Mediastinum', 'preset.abdomen': 'Abdomen',
  'preset.bone': 'Bone', 'viewer.invert': 'Invert', 'viewer.reset': 'Reset',
  'compare.with': 'Compare with:', 'compare.sync': 'Scroll together', 'viewer.rotate': 'Rotate 90°', 'viewer.flip': 'Flip', 'tool.stack': 'Scroll', 'viewer.play': '▶ Play', 'viewer.pause': '⏸ Pause', 'tool.wl': 'Window', 'tool.length': 'Length', 'tool.angle': 'Angle', 'tool.roi': 'ROI', 'tool.clear': 'Clear measurements',
  'measure.detector': '(at the detector)', 'measure.pixels': '(pixels: no size in the file)', 'measure.mean': 'mean', 'sex.M': 'M', 'sex.F': 'F', 'sex.O': 'O',
  'patient.title': 'Studies of {name}', 'patient.born': 'Born',
  'share.title': "Share a patient's data", 'share.to': 'Share with', 'share.purpose': 'Purpose', 'share.days': 'Days',
  'share.reason': 'Reason or note', 'share.scope': 'What', 'share.scope.all': "All of this patient's studies", 'share.scope.one': 'This study only',
  'share.submit': 'Share', 'share.done': 'Shared.', 'share.cancel': 'Cancel',
  'share.consent': "No consent of this patient is recorded. Record the patient's consent first.",
  'shares.title': 'Shares', 'shares.in': 'Shared with us', 'shares.out': 'Shared by us', 'shares.none': 'None.',
  'shares.revoke': 'Stop sharing', 'shares.revoked': 'revoked', 'shares.expired': 'expired', 'shares.patient': 'Patient',
  'shares.from': 'From', 'shares.to': 'To', 'shares.purpose': 'Purpose', 'shares.until': 'Until', 'shares.by': 'Shared by',
  'bg.title': 'Emergency access', 'bg.warning': "Opens a patient's data without share or consent, only when an emergency needs it. Every look is recorded and reviewed by the patient's institution.",
  'bg.birth': 'Birth date (required)', 'bg.name': 'Name (kanji or kana)', 'bg.id': 'or patient ID', 'bg.reason': 'Reason (required, e.g. ambulance, unconscious)',
  'bg.submit': 'Open in an emergency', 'bg.done': 'Opened {n} record(s) for {hours} hours. They show in red in the study list.', 'bg.none': 'No such patient was found.',
  'admin.title': 'Admin', 'admin.reviews': 'Emergency accesses to review', 'admin.review.note': 'Finding', 'admin.review.submit': 'Mark reviewed',
  'admin.audit': 'Audit trail (latest 200)', 'audit.time': 'When', 'audit.actor': 'Who', 'audit.action': 'What', 'audit.patient': 'Patient',
  'audit.detail': 'Detail', 'audit.outcome': 'Outcome',
  'my.studies': 'My studies', 'my.log': 'Who looked at my data', 'my.log.hint': 'Which institution, which role, when and why.',
  'log.institution': 'Institution', 'log.role': 'Role', 'log.action': 'What', 'log.purpose': 'Purpose', 'log.self': '(you)',
  'role.physician': 'physician', 'role.radiologist': 'radiologist', 'role.nurse': 'nurse', 'role.clerk': 'liaison office',
  'role.institution-admin': 'institution admin', 'role.region-admin': 'region admin', 'role.patient': 'patient',
  'action.query': 'listed in a search', 'action.read': 'viewed images', 'action.store': 'stored', 'action.delete': 'deleted', 'action.share': 'shared',
  'action.login': 'login', 'action.logout': 'logout', 'action.admin': 'administration', 'action.break-glass': 'emergency access',
  'action.denied': 'refused', 'action.revoke': 'revoked', 'action.restore': 'restored',
  'error.network': 'Cannot reach the server. Please check the network.', 'loading': 'Loading…',
};

const dicts = { ja, en };
let lang = localStorage.getItem('renkei.lang') || 'ja';

export function getLang() { return lang; }

export function setLang(l) {
  lang = dicts[l] ? l : 'ja';
  localStorage.setItem('renkei.lang', lang);
  document.documentElement.lang = lang;
}

// t returns the string for key in the current language, with {name} placeholders filled from vars.
export function t(key, vars = {}) {
  const s = dicts[lang][key] ?? dicts.ja[key] ?? key;
  return s.replace(/\{(\w+)\}/g, (_, k) => (vars[k] ?? ''));
}

// date formats a DICOM date (YYYYMMDD) or an ISO time for the current language: 2026年11月27日 or 27 Nov 2026.
export function date(v, withTime = false) {
  if (!v) return '';
  let d;
  if (/^\d{8}$/.test(v)) d = new Date(+v.slice(0, 4), +v.slice(4, 6) - 1, +v.slice(6, 8));
  else d = new Date(v);
  if (isNaN(d)) return v;
  const opts = { year: 'numeric', month: lang === 'ja' ? 'long' : 'short', day: 'numeric' };
  if (withTime) Object.assign(opts, { hour: '2-digit', minute: '2-digit' });
  return new Intl.DateTimeFormat(lang === 'ja' ? 'ja-JP' : 'en-GB', opts).format(d);
}

// personName shows a DICOM PN: the ideographic group (kanji) with the phonetic one (kana) in Japanese, the
// alphabetic one in English, whichever exists.
export function personName(pn) {
  if (!pn) return '';
  const [alpha = '', ideo = '', phon = ''] = pn.split('=').map((g) => g.replace(/\^+/g, ' ').trim());
  if (lang === 'ja') return [ideo || alpha, ideo && phon ? `(${phon})` : ''].join(' ').trim();
  return alpha || ideo || phon;
}
