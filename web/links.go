package web

// Share links for people outside renkei (issue 7): routes are registered here, so that server.go stays small.

// linkPublic lists the share-link routes that answer without a login (the PIN page and what it unlocks).
var linkPublic = []string{}

// registerLinks adds the share-link routes.
func (s *Server) registerLinks() {}
