// The users page (Người dùng), for admins: the accounts within the admin's scope (list, add
// with role(s) and a scope picked on the zone tree, change roles, scope and display name,
// set a new password, remove), and each account's personal tokens (make: shown once; list
// with the last use; revoke).
//
// GET|POST /api/v1/users, PATCH|DELETE /api/v1/users/{username},
// GET|POST /api/v1/users/{username}/tokens, DELETE /api/v1/users/{username}/tokens/{id}.
import {
  _, api, askFirst, attempt, h, roleName, state, table, toast, N_, fmtTime, zoneName, zonesInOrder,
} from "../app.js";

// each role with what it allows (its name: app.js ROLE_WORDS)
const ROLES = [
  ["admin", N_("everything in the scope, users included")],
  ["operator", N_("live, schedule, media, volume and power, reports")],
  ["alert", N_("emergency alerts; may go with operator")],
  ["viewer", N_("reads only")],
];

/** A random password of 16 characters from an alphabet without look-alikes. */
function randomPassword() {
  const alphabet = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => alphabet[b % alphabet.length]).join("");
}

let uid = 0;

/** A scope picker: the zone tree as radio buttons (and "every zone" for an admin of the
 * whole tree), `current` chosen (none when not given: the admin chooses, nothing is
 * assumed). Returns {element, value(), set(id)}. */
function scopePicker(name, current) {
  const group = `scope-${name}-${++uid}`;
  const items = [];
  const roots = state.zones.filter((z) => !z.parent);
  const whole = state.session.scope === "*" || (roots.length === 1 && roots[0].id === state.session.scope);
  if (whole) {
    items.push({ id: "*", label: _("Every zone"), depth: 0 });
  }
  for (const { zone, depth } of zonesInOrder()) items.push({ id: zone.id, label: zone.name || zone.id, depth });
  const radios = [];
  const list = h("ul", { class: "tree users-scope" }, items.map((it) => {
    const radio = h("input", { type: "radio", name: group, value: it.id,
      "data-testid": `${name}-scope-${it.id}` });
    radios.push(radio);
    const li = h("li", {}, h("label", { class: "zone" }, radio,
      h("span", { class: "name" }, it.label), it.id !== "*" ? h("code", {}, it.id) : null));
    li.style.paddingInlineStart = `${it.depth * 16}px`;
    return li;
  }));
  const picker = {
    element: h("fieldset", { class: "users-fieldset" }, h("legend", {}, _("Scope")), list),
    value: () => (radios.find((r) => r.checked) || {}).value || "",
    set: (id) => { for (const r of radios) r.checked = r.value === id; },
  };
  if (current) picker.set(current);
  return picker;
}

/** Role checkboxes, `current` ticked (none when not given: the admin chooses); returns
 * {element, value(), set(list)}. */
function rolePicker(name, current) {
  const boxes = ROLES.map(([id]) => h("input", { type: "checkbox", value: id,
    "data-testid": `${name}-role-${id}`, "aria-describedby": `${name}-role-hint-${id}` }));
  const element = h("fieldset", { class: "users-fieldset" }, h("legend", {}, _("Roles")),
    ROLES.map(([id, hint], i) => h("label", { class: "users-role" }, boxes[i],
      h("span", {}, roleName(id)), h("small", { class: "muted", id: `${name}-role-hint-${id}` }, _(hint)))));
  const picker = {
    element,
    value: () => boxes.filter((b) => b.checked).map((b) => b.value),
    set: (list) => { for (const b of boxes) b.checked = list.includes(b.value); },
  };
  picker.set(current || []);
  return picker;
}

/** Why roles cannot go together (the server says the same), or "". */
function rolesProblem(roles) {
  if (!roles.length) return _("Choose at least one role.");
  if (roles.length > 1 && !(roles.length === 2 && roles.includes("operator") && roles.includes("alert"))) {
    return _("Only operator and alert official go together; any other role stands alone.");
  }
  return "";
}

export default {
  async render(container) {
    const me = state.session.user;
    const listBox = h("div", { "data-testid": "users-list" });
    const panel = h("div", { class: "users-panel", "aria-live": "polite" });
    let users = [];

    async function load() {
      const data = await attempt(() => api("GET", "/api/v1/users"));
      if (!data) return;
      users = data.users.sort((a, b) => a.username.localeCompare(b.username));
      listBox.replaceChildren(table([
        { title: _("User"), value: (u) => h("span", { "data-testid": `user-${u.username}` },
          h("strong", {}, u.display_name || u.username), " ", h("code", {}, u.username),
          u.username === me ? h("span", { class: "badge" }, _("you")) : null) },
        { title: _("Roles"), value: (u) => h("span", { class: "row" },
          u.roles.map((r) => h("span", { class: "badge" }, roleName(r)))) },
        { title: _("Scope"), value: (u) => (u.scope === "*" ? _("Every zone") : zoneName(u.scope)) },
        { title: _("Password changed"), value: (u) => fmtTime(u.password_changed_at) },
        { title: _("Actions"), value: (u) => h("div", { class: "row" },
          h("button", { type: "button", class: "secondary", "data-testid": `user-edit-${u.username}`,
            "aria-label": _("Change {user}", { user: u.username }), onclick: () => edit(u) }, _("Change")),
          h("button", { type: "button", class: "secondary", "data-testid": `user-password-${u.username}`,
            "aria-label": _("New password for {user}", { user: u.username }), onclick: () => password(u) },
          _("New password")),
          h("button", { type: "button", class: "secondary", "data-testid": `user-tokens-${u.username}`,
            "aria-label": _("Tokens of {user}", { user: u.username }), onclick: () => tokens(u) }, _("Tokens")),
          u.username === me ? null : h("button", { type: "button", class: "danger",
            "data-testid": `user-remove-${u.username}`,
            "aria-label": _("Remove {user}", { user: u.username }), onclick: () => remove(u) }, _("Remove"))) },
      ], users, { empty: _("No user in your scope.") }));
    }

    function open(title, ...body) {
      const heading = h("h2", { tabindex: "-1" }, title);
      panel.replaceChildren(h("section", { class: "card" }, heading, ...body,
        h("p", {}, h("button", { type: "button", class: "secondary", "data-testid": "users-panel-close",
          onclick: () => panel.replaceChildren() }, _("Close")))));
      heading.focus();
    }

    // --- add ---
    function add() {
      const username = h("input", { name: "username", required: true, autocomplete: "off",
        pattern: "[a-z0-9][a-z0-9._\\-]{0,63}", "data-testid": "new-user-username" });
      const display = h("input", { name: "display_name", "data-testid": "new-user-display" });
      const pass = h("input", { name: "password", required: true, minlength: "8", autocomplete: "new-password",
        "data-testid": "new-user-password" });
      const roles = rolePicker("new-user");
      const scope = scopePicker("new-user");
      const error = h("p", { class: "error", role: "alert" });
      const form = h("form", { class: "grid", "data-testid": "new-user-form" },
        h("label", {}, _("Username (lower case: a-z 0-9 . _ -)"), username),
        h("label", {}, _("Display name"), display),
        h("label", {}, _("Password (at least 8 characters)"), h("span", { class: "row users-pass" }, pass,
          h("button", { type: "button", class: "secondary", onclick: () => { pass.value = randomPassword(); } },
            _("Generate")))),
        roles.element, scope.element, error,
        h("button", { type: "submit", "data-testid": "new-user-save" }, _("Add the user")));
      form.addEventListener("submit", async (e) => {
        e.preventDefault();
        error.textContent = rolesProblem(roles.value()) ||
          (scope.value() ? "" : _("Choose the scope: the zone whose loudspeakers the user may see and act on."));
        if (error.textContent) return;
        const made = await attempt(() => api("POST", "/api/v1/users", {
          username: username.value.trim(), display_name: display.value.trim(), password: pass.value,
          role: roles.value(), scope: scope.value() }));
        if (!made) return;
        toast(_("User {user} added. Give them their password: it is not shown again.", { user: made.user.username }));
        panel.replaceChildren();
        load();
      });
      open(_("Add a user"), form);
    }

    // --- change roles, scope, display name ---
    function edit(u) {
      const display = h("input", { name: "display_name", value: u.display_name || "",
        "data-testid": "edit-user-display" });
      const own = u.username === me;
      const roles = rolePicker("edit-user", u.roles);
      const scope = scopePicker("edit-user", u.scope);
      const error = h("p", { class: "error", role: "alert" });
      const form = h("form", { class: "grid", "data-testid": "edit-user-form" },
        h("label", {}, _("Display name"), display),
        own ? h("p", { class: "muted" }, _("Your own roles and scope are changed by another admin.")) : [roles.element, scope.element],
        error,
        h("button", { type: "submit", "data-testid": "edit-user-save" }, _("Save")));
      form.addEventListener("submit", async (e) => {
        e.preventDefault();
        const body = { display_name: display.value.trim() };
        if (!own) {
          error.textContent = rolesProblem(roles.value());
          if (error.textContent) return;
          body.role = roles.value();
          if (scope.value() && scope.value() !== u.scope) body.scope = scope.value();
        }
        const done = await attempt(() => api("PATCH", `/api/v1/users/${encodeURIComponent(u.username)}`, body));
        if (!done) return;
        toast(_("User {user} changed.", { user: u.username }));
        panel.replaceChildren();
        load();
      });
      open(_("Change {user}", { user: u.username }), form);
    }

    // --- a new password ---
    function password(u) {
      const pass = h("input", { name: "password", required: true, minlength: "8", autocomplete: "new-password",
        "data-testid": "reset-password" });
      const own = u.username === me;
      const current = own ? h("input", { type: "password", name: "current_password", required: true,
        autocomplete: "current-password", "data-testid": "reset-current" }) : null;
      const form = h("form", { class: "grid", "data-testid": "reset-form" },
        own ? h("label", {}, _("Your current password"), current) : null,
        h("label", {}, _("New password (at least 8 characters)"), h("span", { class: "row users-pass" }, pass,
          h("button", { type: "button", class: "secondary", onclick: () => { pass.value = randomPassword(); } },
            _("Generate")))),
        h("p", { class: "muted" }, _("A new password ends the user's open sessions.")),
        h("button", { type: "submit", "data-testid": "reset-save" }, _("Set the password")));
      form.addEventListener("submit", async (e) => {
        e.preventDefault();
        const body = { password: pass.value };
        if (own) body.current_password = current.value;
        const done = await attempt(() => api("PATCH", `/api/v1/users/${encodeURIComponent(u.username)}`, body));
        if (!done) return;
        toast(_("The password of {user} is set.", { user: u.username }));
        if (own) return; // the session has ended with it: the shell signs out on the next call
        panel.replaceChildren();
      });
      open(_("New password for {user}", { user: u.username }), form);
    }

    // --- remove, in two steps ---
    function remove(u) {
      open(_("Remove {user}", { user: u.username }),
        h("p", {}, _("The account, its tokens and its sessions end at once.")),
        h("button", { type: "button", class: "danger", "data-testid": "remove-confirm",
          onclick: async () => {
            const done = await attempt(() => api("DELETE", `/api/v1/users/${encodeURIComponent(u.username)}`));
            if (!done) return;
            toast(_("User {user} removed.", { user: u.username }));
            panel.replaceChildren();
            load();
          } }, _("Remove {user}", { user: u.username })));
    }

    // --- personal tokens ---
    async function tokens(u) {
      const base = `/api/v1/users/${encodeURIComponent(u.username)}/tokens`;
      const list = h("div", { "data-testid": "tokens-list", tabindex: "-1" });
      const shown = h("div", { "aria-live": "polite" });
      const draw = async () => {
        const data = await attempt(() => api("GET", base));
        if (!data) return;
        list.replaceChildren(table([
          { title: _("Name"), value: (t) => t.name || h("span", { class: "muted" }, _("(no name)")) },
          { title: _("Made"), value: (t) => fmtTime(t.created_at) },
          { title: _("Last used"), value: (t) => (t.last_used_at ? fmtTime(t.last_used_at) : _("never")) },
          { title: _("Actions"), value: (t) => h("button", { type: "button", class: "danger",
            "data-testid": `token-revoke-${t.id}`,
            "aria-label": _("Revoke the token {name}", { name: t.name || t.id }),
            onclick: (e) => askFirst(e.currentTarget,
              _("Revoke the token {name}? The programs that use it lose their access at once.",
                { name: t.name || t.id }), _("Revoke"), async () => {
                const done = await attempt(() => api("DELETE", `${base}/${encodeURIComponent(t.id)}`));
                if (done) { toast(_("Token revoked.")); await draw(); list.focus(); }
              }) }, _("Revoke")) },
        ], data.tokens.sort((a, b) => b.created_at - a.created_at), { empty: _("No token.") }));
      };
      const name = h("input", { name: "name", maxlength: "100", "data-testid": "token-name",
        placeholder: _("e.g. the district's monitoring") });
      const form = h("form", { class: "row", "data-testid": "token-form" },
        h("label", {}, _("Name of the new token"), name),
        h("button", { type: "submit", "data-testid": "token-create" }, _("Make a token")));
      form.addEventListener("submit", async (e) => {
        e.preventDefault();
        const made = await attempt(() => api("POST", base, { name: name.value.trim() }));
        if (!made) return;
        name.value = "";
        const value = h("input", { readonly: true, value: made.token, class: "users-token",
          "data-testid": "token-value", "aria-label": _("The new token") });
        shown.replaceChildren(h("div", { class: "card users-once" },
          h("p", { class: "warn" }, h("strong", {}, _("Copy this token now: it is shown this once."))),
          h("div", { class: "row" }, value,
            h("button", { type: "button", class: "secondary", "data-testid": "token-copy",
              onclick: async () => {
                value.select();
                try { await navigator.clipboard.writeText(made.token); toast(_("Copied.")); }
                catch { toast(_("Select the text and copy it.")); }
              } }, _("Copy")))));
        value.focus();
        value.select();
        draw();
      });
      open(_("Tokens of {user}", { user: u.username }),
        h("p", { class: "muted" }, _("A token acts for the user who made it, with that user's roles and scope, in scripts and other programs (Authorization: Bearer …).")),
        form, shown, list);
      await draw();
    }

    container.append(
      h("p", { class: "row" }, h("button", { type: "button", "data-testid": "user-add", onclick: add },
        _("Add a user"))),
      panel,
      h("section", { class: "card" }, listBox));
    await load();
  },
};
