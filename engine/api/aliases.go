package api

import (
	"net/http"

	"github.com/ember-run/ember/engine/api/wire"
	"github.com/ember-run/ember/engine/registry"
)

func aliasJSON(a registry.Alias) wire.Alias {
	return wire.Alias{Name: a.Name, Function: a.Function, Version: a.Version, Extra: a.Extra,
		Description: a.Description, Created: a.Created, Updated: a.Updated}
}

// createAlias answers POST /v1/functions/{name}/aliases: 409 if the alias
// exists.
func (s *Server) createAlias(w http.ResponseWriter, r *http.Request, tenant string) {
	s.putAlias(w, r, tenant, "", true)
}

// updateAlias answers PUT /v1/functions/{name}/aliases/{alias}: the whole
// alias is replaced; 404 if it does not exist.
func (s *Server) updateAlias(w http.ResponseWriter, r *http.Request, tenant string) {
	s.putAlias(w, r, tenant, r.PathValue("alias"), false)
}

func (s *Server) putAlias(w http.ResponseWriter, r *http.Request, tenant, name string, create bool) {
	var in wire.Alias
	if !s.decode(w, r, &in, "alias") {
		return
	}
	if name == "" {
		name = in.Name
	} else if in.Name != "" && in.Name != name {
		s.fail(w, r, invalid("alias name %q in the body, %q in the path", in.Name, name))
		return
	}
	a, err := s.deps.Registry.PutAlias(r.Context(), registry.Alias{Tenant: tenant, Function: r.PathValue("name"), Name: name,
		Version: in.Version, Extra: in.Extra, Description: in.Description}, create)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	code := http.StatusOK
	if create {
		code = http.StatusCreated
	}
	writeJSON(w, code, aliasJSON(a))
}

func (s *Server) listAliases(w http.ResponseWriter, r *http.Request, tenant string) {
	as, err := s.deps.Registry.ListAliases(r.Context(), tenant, r.PathValue("name"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := wire.Aliases{Aliases: make([]wire.Alias, 0, len(as))}
	for _, a := range as {
		out.Aliases = append(out.Aliases, aliasJSON(a))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) getAlias(w http.ResponseWriter, r *http.Request, tenant string) {
	a, err := s.deps.Registry.GetAlias(r.Context(), tenant, r.PathValue("name"), r.PathValue("alias"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, aliasJSON(a))
}

func (s *Server) deleteAlias(w http.ResponseWriter, r *http.Request, tenant string) {
	if err := s.deps.Registry.DeleteAlias(r.Context(), tenant, r.PathValue("name"), r.PathValue("alias")); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
