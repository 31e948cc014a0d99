package disk

// PerFileSync makes s sync each file and folder itself, as it does where syncfs(2) is missing.
func PerFileSync(s *Store) { s.group = nil }

// AlwaysShare makes every Commit of s share flushes, however few are syncing. It returns false where s cannot share.
func AlwaysShare(s *Store) bool {
	s.sharedFrom = 1
	return s.group != nil
}
