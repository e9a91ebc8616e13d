// 中医知识库审校 — the curator's page (/curate). Plain ES2020 module, no build step, no external resources.
// Talks to the REST API under /v1/curation (docs/curation.md) with the bearer token the user pastes in.
// Routes (hash): #/login #/search #/entity/KIND/ID #/edit/KIND/ID #/new/KIND #/deprecate/KIND/ID
//                #/queue #/cr/ID #/releases #/release/NAME

const TOKEN_KEY = "tcm.curate.token";
const API = "/v1/curation";

const state = {
  token: sessionStorage.getItem(TOKEN_KEY) || "",
  me: null, // {client, roles}
  schema: null, // {kinds: {kind: {label, parent, fields: [...]}}}
  afterLogin: null,
};

// ---- labels -------------------------------------------------------------------------------------------
const KIND_FALLBACK = {
  herb: "中药", form: "炮制品", formula: "方剂", disease: "疾病", syndrome: "证候",
  symptom: "症状", rule: "安全规则", source: "文献来源", principle: "治法", ruleset: "规则集", substitution: "代用品",
};
const KIND_COLOURS = {
  herb: "#2f855a", form: "#84cc16", formula: "#2563eb", disease: "#dc2626", syndrome: "#ea580c",
  symptom: "#9333ea", rule: "#7f1d1d", source: "#6b7280", principle: "#0d9488",
};
const STATUS_LABEL = {
  open: "待审核", approved: "已批准", rejected: "已驳回", released: "已发布", withdrawn: "已撤回", conflict: "冲突",
};
const OP_LABEL = {
  create: "新建", update: "修改", deprecate: "停用", add_relation: "添加关联", remove_relation: "移除关联",
};
const CHANGE_LABEL = {
  created: "新建", updated: "修改", deprecated: "停用", removed: "删除", restored: "恢复", added: "新增",
};
const ROLE_LABEL = { curator: "编辑", reviewer: "审核", admin: "管理员", emr: "EMR", researcher: "研究", monitor: "监控" };
const RELEASE_KIND_LABEL = { seed: "初始版本", release: "发布", restore: "恢复" };
const DECISION_LABEL = { approve: "批准", reject: "驳回" };
const EVENT_LABEL = {
  proposed: "提交", revised: "修改", validated: "重新校验", approved: "批准", rejected: "驳回", released: "发布",
  withdrawn: "撤回", conflict: "冲突",
};
const HTTP_LABEL = {
  400: "请求有误", 401: "未登录或令牌无效", 403: "无权执行此操作", 404: "未找到", 409: "冲突", 412: "已被他人修改",
  413: "内容过大", 422: "内容未通过校验", 428: "缺少版本号（If-Match）", 429: "请求过于频繁", 500: "服务器错误",
  503: "服务暂不可用",
};
const ROLES_ZH = ["君", "臣", "佐", "使", "佐使"];
// Chinese labels of option values the schema gives as English codes (per field name)
const OPTION_LABELS = {
  verification: { verified: "已核对原文", secondary: "据二手资料", unverified: "未核对（临床使用前须核对）" },
  internal_use: { allowed: "可内服", processed_only: "须炮制后内服", external_only: "仅外用", banned: "禁用（已不再使用）" },
  kind: {
    incompatibility: "十八反（相反）", antagonism: "十九畏（相畏）", controlled: "医疗用毒性药品", banned: "禁用药",
    duration: "疗程限制", herb_duration: "单味药疗程限制",
    pharmacopoeia: "药典", standard: "标准", regulation: "法规", textbook: "教材", classic: "古籍", project: "本项目",
  },
  severity: { info: "提示", warning: "警告", critical: "严重" },
};
// Edit-form order: the entry's own fields first, then safety fields, then its source; deprecation is its own action.
const SAFETY_FIELDS = ["dose_g", "toxicity", "pregnancy", "preparation", "internal_use", "controlled", "populations", "cautions"];
const SOURCE_FIELDS = ["source", "verification"];
const DEPRECATION_FIELDS = ["deprecated", "replaced_by", "deprecation_reason"];

// ---- DOM helpers ---------------------------------------------------------------------------------------
function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, kids);
  return el;
}
const SVG_NS = "http://www.w3.org/2000/svg";
function s(tag, attrs, ...kids) {
  const el = document.createElementNS(SVG_NS, tag);
  setAttrs(el, attrs);
  append(el, kids);
  return el;
}
function setAttrs(el, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "text") el.textContent = v;
    else if (k === "value") el.value = v;
    else if (k === "checked") el.checked = !!v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
}
function append(el, kids) {
  for (const kid of kids.flat(Infinity)) {
    if (kid === null || kid === undefined || kid === false) continue;
    el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
}
function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}
const $ = (sel, root = document) => root.querySelector(sel);
const enc = encodeURIComponent;

function badgeKind(kind) {
  return h("span", { class: `badge kind-${kind}`, "data-testid": "kind-badge" }, kindLabel(kind));
}
function badgeStatus(status) {
  return h("span", { class: `badge status-${status}`, "data-testid": "cr-status", "data-status": status },
    STATUS_LABEL[status] || status);
}
function fmtTime(t) {
  if (!t) return "—";
  const d = new Date(t);
  if (Number.isNaN(d.getTime())) return String(t);
  const p = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}`;
}
function swatch(kind) {
  const el = h("span", { class: "sw" });
  el.style.background = KIND_COLOURS[kind] || "#6b7280"; // CSSOM, allowed under the page's CSP (no inline style attributes)
  return el;
}
function muted(text) {
  return h("span", { class: "muted" }, text);
}

// ---- flash messages ------------------------------------------------------------------------------------
let flashTimer = null;
let flashNavs = 0;
function flash(text, kind = "ok") {
  flashNavs = 1;
  const box = $("#flash");
  clear(box).append(h("p", { class: `msg ${kind}`, "data-testid": `flash-${kind}` }, text));
  clearTimeout(flashTimer);
  if (kind === "ok") flashTimer = setTimeout(() => clear(box), 8000);
}
function clearFlash() {
  clearTimeout(flashTimer);
  clear($("#flash"));
}

// ---- API -----------------------------------------------------------------------------------------------
class ApiError extends Error {
  constructor(status, problem) {
    super((problem && (problem.detail || problem.title)) || `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
  }
}

function stripEtag(tag) {
  if (!tag) return null;
  return String(tag).replace(/^W\//, "").replace(/^"(.*)"$/, "$1");
}

async function api(method, path, { body, headers = {}, raw = false, noAuthRedirect = false } = {}) {
  const init = { method, headers: { Accept: "application/json, application/problem+json", ...headers } };
  if (state.token) init.headers.Authorization = `Bearer ${state.token}`;
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, { title: "无法连接服务器", detail: String(e && e.message ? e.message : e) });
  }
  if (raw && res.ok) return res;
  const text = await res.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
  }
  if (!res.ok) {
    const problem = data && typeof data === "object" ? data : { title: res.statusText, detail: text };
    if (res.status === 401 && !noAuthRedirect) {
      logout("登录已失效或令牌无效，请重新登录。");
    }
    throw new ApiError(res.status, problem);
  }
  return { status: res.status, data, etag: stripEtag(res.headers.get("ETag")), headers: res.headers };
}

function listOf(data, ...keys) {
  if (Array.isArray(data)) return data;
  if (!data || typeof data !== "object") return [];
  for (const k of [...keys, "items", "results", "data"]) if (Array.isArray(data[k])) return data[k];
  return [];
}

function problemText(p) {
  if (p === null || p === undefined) return "";
  if (typeof p !== "object") return String(p);
  const where = [];
  if (p.kind && p.id) where.push(`${kindLabel(p.kind)} ${p.id}`);
  else if (p.entity) where.push(String(p.entity));
  const fld = p.field || p.path || (Array.isArray(p.loc) ? p.loc.join(".") : p.loc);
  if (fld) where.push(String(fld));
  const msg = p.message || p.msg || p.detail || p.problem || p.text || JSON.stringify(p);
  const check = p.check || p.code || p.type;
  return `${where.length ? `[${where.join(" · ")}] ` : ""}${msg}${check && typeof check === "string" ? `（${check}）` : ""}`;
}

function problemBox(err, testid = "error") {
  const status = err instanceof ApiError ? err.status : 0;
  const p = err instanceof ApiError ? err.problem : { title: "出错了", detail: String(err && err.message ? err.message : err) };
  const head = status ? `${status} ${HTTP_LABEL[status] || ""}` : "";
  const title = p.title && p.title !== head ? p.title : "";
  const problems = listOf(p.problems || (p.validation && p.validation.problems) || []);
  return h("div", { class: "error-box", role: "alert", "data-testid": testid, "data-status": status || null },
    h("strong", {}, [head, title].filter(Boolean).join("：") || "出错了"),
    p.detail ? h("div", { "data-testid": `${testid}-detail` }, p.detail) : null,
    problems.length ? h("ul", { "data-testid": `${testid}-problems` }, problems.map((x) => h("li", {}, problemText(x)))) : null);
}

function downloadBlob(blob, filename) {
  const url = URL.createObjectURL(blob);
  const a = h("a", { href: url, download: filename });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 5000);
}

// ---- schema --------------------------------------------------------------------------------------------
function normalizeOptions(opts, field) {
  if (!opts) return null;
  const known = OPTION_LABELS[field] || {};
  if (!Array.isArray(opts)) return Object.entries(opts).map(([value, label]) => ({ value, label: String(label) }));
  return opts.map((o) => {
    if (o && typeof o === "object") {
      const value = o.value ?? o.id ?? o.name;
      return { value, label: o.label ?? known[value] ?? String(value) };
    }
    return { value: o, label: known[o] ?? String(o) };
  });
}
function orderFields(fields) {
  const rank = (f) => (DEPRECATION_FIELDS.includes(f.name) ? 4 : SOURCE_FIELDS.includes(f.name) ? 3 : SAFETY_FIELDS.includes(f.name) ? 2 : f.name === "id" ? 0 : 1);
  return fields.map((f, i) => [rank(f), i, f]).sort((a, b) => a[0] - b[0] || a[1] - b[1]).map((x) => x[2]);
}
function normalizeSchema(raw) {
  let kinds = raw && raw.kinds ? raw.kinds : raw || {};
  if (Array.isArray(kinds)) kinds = Object.fromEntries(kinds.map((k) => [k.kind || k.name, k]));
  const out = {};
  for (const [kind, info] of Object.entries(kinds)) {
    let fields = info.fields || [];
    if (!Array.isArray(fields)) fields = Object.entries(fields).map(([name, f]) => ({ name, ...f }));
    out[kind] = {
      ...info,
      label: info.label || KIND_FALLBACK[kind] || kind,
      parent: info.parent || null,
      fields: orderFields(fields.map((f) => ({ ...f, type: f.type || "text", label: f.label || f.name, options: normalizeOptions(f.options, f.name) }))),
    };
  }
  return { ...(raw || {}), kinds: out };
}
async function loadSchema() {
  if (state.schema) return state.schema;
  const { data } = await api("GET", `${API}/schema`);
  state.schema = normalizeSchema(data);
  return state.schema;
}
function kindInfo(kind) {
  return (state.schema && state.schema.kinds[kind]) || { label: KIND_FALLBACK[kind] || kind, parent: null, fields: [] };
}
function kindLabel(kind) {
  return kindInfo(kind).label || kind;
}
function kindsList() {
  return state.schema ? Object.keys(state.schema.kinds) : Object.keys(KIND_FALLBACK);
}
function fieldDef(kind, name) {
  return kindInfo(kind).fields.find((f) => f.name === name) || null;
}
function fieldLabel(kind, name) {
  const f = fieldDef(kind, name);
  return f ? f.label : name;
}
function childKinds(kind) {
  return kindsList().filter((k) => kindInfo(k).parent === kind);
}

// ---- values --------------------------------------------------------------------------------------------
function isEmpty(v) {
  if (v === null || v === undefined || v === "") return true;
  if (Array.isArray(v)) return v.length === 0;
  if (typeof v === "object") return Object.values(v).every(isEmpty);
  return false;
}
function canonical(v) {
  if (Array.isArray(v)) return `[${v.map(canonical).join(",")}]`;
  if (v && typeof v === "object") {
    const keys = Object.keys(v).filter((k) => !isEmpty(v[k])).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonical(v[k])}`).join(",")}}`;
  }
  if (v === undefined) return "null";
  return JSON.stringify(v);
}
function sameValue(a, b, type) {
  if (type === "bool") return !!a === !!b;
  if (isEmpty(a) && isEmpty(b)) return true;
  if (type === "range") return canonical(asRange(a)) === canonical(asRange(b));
  return canonical(a) === canonical(b);
}
function asRange(v) {
  if (v === null || v === undefined) return null;
  if (typeof v === "number") return [v, v];
  if (Array.isArray(v) && v.length === 2) return [Number(v[0]), Number(v[1])];
  return v;
}
function inferType(v) {
  if (typeof v === "boolean") return "bool";
  if (typeof v === "number") return "number";
  if (Array.isArray(v)) {
    if (v.every((x) => typeof x === "string")) return "list";
    if (v.length === 2 && v.every((x) => typeof x === "number")) return "range";
    if (v.every((x) => x && typeof x === "object" && "herb" in x)) return "ingredients";
    return "json";
  }
  if (v && typeof v === "object") return "ref" in v ? "source" : "json";
  return "text";
}
function optionLabel(def, v) {
  const o = def && def.options ? def.options.find((x) => String(x.value) === String(v)) : null;
  return o ? o.label : String(v);
}
function fmtNum(n) {
  return typeof n === "number" ? String(Math.round(n * 1000) / 1000) : String(n);
}

// Human-readable rendering of a field value (entity page, diffs, conflict table).
function fmtValue(def, v) {
  if (v === null || v === undefined || (Array.isArray(v) && v.length === 0) || v === "") return muted("—");
  const type = (def && def.type) || inferType(v);
  switch (type) {
    case "range": {
      const r = asRange(v);
      if (!Array.isArray(r)) return JSON.stringify(v);
      return r[0] === r[1] ? `${fmtNum(r[0])} 克` : `${fmtNum(r[0])}–${fmtNum(r[1])} 克`;
    }
    case "bool":
      return v ? "是" : "否";
    case "enum":
      return optionLabel(def, v);
    case "list":
    case "multienum":
      return Array.isArray(v) ? v.map((x) => (type === "multienum" ? optionLabel(def, x) : String(x))).join("、") : String(v);
    case "ingredients":
      if (!Array.isArray(v)) return h("pre", { class: "json" }, JSON.stringify(v, null, 2));
      return h("table", { class: "ingredients-view" },
        h("thead", {}, h("tr", {}, h("th", {}, "药味"), h("th", {}, "用量"), h("th", {}, "角色"), h("th", {}, "备注"))),
        h("tbody", {}, v.map((i) => h("tr", {},
          h("td", {}, i.herb || "—"),
          h("td", {}, [i.dose_g != null ? `${fmtNum(i.dose_g)} 克` : "", i.amount || ""].filter(Boolean).join(" ") || "—"),
          h("td", {}, i.role || "—"),
          h("td", {}, i.note || "")))));
    case "source":
      if (v && typeof v === "object") return [v.ref, v.loc].filter(Boolean).join(" · ") || muted("—");
      return String(v);
    case "number":
      return fmtNum(v);
    case "json":
      if (Array.isArray(v) && v.length && v.every((m) => m && typeof m === "object" && Array.isArray(m.when))) return fmtModifications(v);
      if (v && typeof v === "object" && !Array.isArray(v) && Object.values(v).every((x) => x === null || typeof x !== "object")) {
        const entries = Object.entries(v).filter(([, x]) => !isEmpty(x));
        if (!entries.length) return muted("—");
        return entries.map(([k, x], i) => [i ? "；" : "", `${CODE_LABELS[k] || k}：${x}`]);
      }
      return h("pre", { class: "json" }, JSON.stringify(v, null, 2));
    case "text":
    case "textarea":
      if (typeof v !== "object") return String(v);
    // falls through
    default:
      return typeof v === "object" ? h("pre", { class: "json" }, JSON.stringify(v, null, 2)) : String(v);
  }
}

const CODE_LABELS = { gbt15657: "GB/T 15657", gbt16751: "GB/T 16751.2", icd11: "ICD-11" };
// 加减: "见 恶寒、无汗 → 加 桂枝 9 克；去 …（备注）"
function fmtModifications(mods) {
  const ing = (i) => [i.herb, i.dose_g != null ? ` ${fmtNum(i.dose_g)} 克` : "", i.amount ? ` ${i.amount}` : "", i.note ? `（${i.note}）` : ""].join("");
  return h("ul", { class: "mods" }, mods.map((m) => h("li", {},
    h("span", {}, `见 ${(m.when || []).join("、")}`),
    (m.add || []).length ? h("span", {}, ` → 加 ${m.add.map(ing).join("、")}`) : null,
    (m.remove || []).length ? h("span", {}, `${(m.add || []).length ? "；" : " → "}去 ${m.remove.join("、")}`) : null,
    m.note ? h("span", { class: "muted" }, `（${m.note}）`) : null)));
}

// ---- suggestions (datalist filled from the entity search) ----------------------------------------------
let datalistSeq = 0;
function attachSuggest(input, kinds, useName) {
  const id = `dl-${++datalistSeq}`;
  const dl = h("datalist", { id });
  input.setAttribute("list", id);
  input.after(dl);
  let timer = null;
  input.addEventListener("input", () => {
    clearTimeout(timer);
    const q = input.value.trim();
    if (!q) return;
    timer = setTimeout(async () => {
      try {
        const kindParam = kinds.length === 1 ? `&kind=${enc(kinds[0])}` : "";
        const { data } = await api("GET", `${API}/entities?q=${enc(q)}${kindParam}&limit=12`);
        const items = listOf(data, "entities").filter((e) => !kinds.length || kinds.includes(e.kind));
        clear(dl).append(...items.map((e) => h("option", { value: useName ? e.name : e.id }, `${e.name} (${kindLabel(e.kind)} ${e.id})`)));
      } catch {
        /* suggestions are optional */
      }
    }, 250);
  });
  return input;
}

// ---- form widgets --------------------------------------------------------------------------------------
class FieldError extends Error {}

function num(str, what) {
  const t = String(str).trim();
  if (t === "") return null;
  const n = Number(t);
  if (!Number.isFinite(n)) throw new FieldError(`${what}不是数字`);
  return n;
}

// Each widget: {el, get() -> value (throws FieldError), set(value), focusEl}
function makeWidget(def, idBase) {
  const id = `f-${idBase}`;
  const tid = `field-${def.name}`;
  const req = !!def.required;
  switch (def.type) {
    case "textarea": {
      const ta = h("textarea", { id, name: def.name, "data-testid": tid, rows: 3, required: req || null });
      return { el: ta, focusEl: ta, get: () => ta.value.trim() || null, set: (v) => { ta.value = v ?? ""; } };
    }
    case "list": {
      const ta = h("textarea", { id, name: def.name, "data-testid": tid, rows: 3, "aria-describedby": `${id}-hint` });
      const hint = h("span", { class: "help", id: `${id}-hint` }, "每行一项");
      return {
        el: h("div", {}, ta, hint), focusEl: ta,
        get: () => ta.value.split(/\r?\n/).map((x) => x.trim()).filter(Boolean),
        set: (v) => {
          ta.value = Array.isArray(v) ? v.join("\n") : v ? String(v) : "";
          ta.rows = Math.min(12, Math.max(3, ta.value.split("\n").length + 1));
        },
      };
    }
    case "enum": {
      const sel = h("select", { id, name: def.name, "data-testid": tid },
        h("option", { value: "" }, req ? "（请选择）" : "（未设置）"),
        (def.options || []).map((o) => h("option", { value: String(o.value) }, o.label === String(o.value) ? o.label : `${o.label}`)));
      return {
        el: sel, focusEl: sel,
        get: () => {
          if (sel.value === "") return null;
          const o = (def.options || []).find((x) => String(x.value) === sel.value);
          return o ? o.value : sel.value;
        },
        set: (v) => {
          if (v !== null && v !== undefined && ![...sel.options].some((o) => o.value === String(v))) {
            sel.append(h("option", { value: String(v) }, String(v)));
          }
          sel.value = v === null || v === undefined ? "" : String(v);
        },
      };
    }
    case "multienum": {
      const boxes = (def.options || []).map((o, i) => {
        const cb = h("input", { type: "checkbox", id: `${id}-${i}`, value: String(o.value), "data-testid": `${tid}-${o.value}` });
        return { o, cb, el: h("label", { for: `${id}-${i}` }, cb, " ", o.label) };
      });
      const group = h("div", { class: "checks", role: "group", "aria-labelledby": `${id}-label`, "data-testid": tid }, boxes.map((b) => b.el));
      return {
        el: group, focusEl: boxes[0] ? boxes[0].cb : group,
        get: () => boxes.filter((b) => b.cb.checked).map((b) => b.o.value),
        set: (v) => {
          const vals = new Set((Array.isArray(v) ? v : []).map(String));
          boxes.forEach((b) => { b.cb.checked = vals.has(String(b.o.value)); });
        },
      };
    }
    case "range": {
      const lo = h("input", { type: "number", id: `${id}-min`, min: 0, step: "any", "data-testid": `${tid}-min`, "aria-label": `${def.label} 最小值（克）` });
      const hi = h("input", { type: "number", id: `${id}-max`, min: 0, step: "any", "data-testid": `${tid}-max`, "aria-label": `${def.label} 最大值（克）` });
      return {
        el: h("div", { class: "range-inputs", role: "group", "aria-labelledby": `${id}-label` }, lo, h("span", {}, "至"), hi, h("span", {}, "克")),
        focusEl: lo,
        get: () => {
          const a = num(lo.value, "最小值");
          const b = num(hi.value, "最大值");
          if (a === null && b === null) return null;
          if (a === null || b === null) throw new FieldError("请同时填写最小值和最大值（相同表示固定用量）");
          if (a < 0 || b < 0) throw new FieldError("用量不能为负数");
          if (a > b) throw new FieldError("最小值不能大于最大值");
          return [a, b];
        },
        set: (v) => {
          const r = asRange(v);
          lo.value = Array.isArray(r) ? fmtNum(r[0]) : "";
          hi.value = Array.isArray(r) ? fmtNum(r[1]) : "";
        },
      };
    }
    case "number": {
      const inp = h("input", { type: "number", id, step: "any", name: def.name, "data-testid": tid });
      return { el: inp, focusEl: inp, get: () => num(inp.value, def.label), set: (v) => { inp.value = v ?? ""; } };
    }
    case "bool": {
      const cb = h("input", { type: "checkbox", id, name: def.name, "data-testid": tid });
      return { el: h("div", { class: "checks" }, h("label", { for: id }, cb, " 是")), focusEl: cb, get: () => cb.checked, set: (v) => { cb.checked = !!v; } };
    }
    case "ingredients":
      return ingredientsWidget(def, id, tid);
    case "source": {
      const ref = h("input", { type: "text", id: `${id}-ref`, "data-testid": `${tid}-ref`, placeholder: "文献编号，如 chp2020", "aria-label": "文献编号" });
      const loc = h("input", { type: "text", id: `${id}-loc`, "data-testid": `${tid}-loc`, placeholder: "章节或页码", "aria-label": "章节或页码" });
      const wrap = h("div", { class: "row", role: "group", "aria-labelledby": `${id}-label` }, h("span", {}, ref), loc);
      attachSuggest(ref, ["source"], false);
      return {
        el: wrap, focusEl: ref,
        get: () => {
          const r = ref.value.trim();
          const l = loc.value.trim();
          if (!r && !l) return null;
          if (!r) throw new FieldError("请填写文献编号");
          return l ? { ref: r, loc: l } : { ref: r };
        },
        set: (v) => {
          ref.value = (v && v.ref) || "";
          loc.value = (v && v.loc) || "";
        },
      };
    }
    case "json": {
      if (def.name === "codes") return codesWidget(def, id, tid);
      const ta = h("textarea", { id, class: "code", name: def.name, "data-testid": tid, spellcheck: "false", "aria-describedby": `${id}-hint` });
      return {
        el: h("div", {}, ta, h("span", { class: "help", id: `${id}-hint` }, "JSON 格式")), focusEl: ta,
        get: () => {
          const t = ta.value.trim();
          if (!t) return null;
          try {
            return JSON.parse(t);
          } catch (e) {
            throw new FieldError(`不是有效的 JSON：${e.message}`);
          }
        },
        set: (v) => {
          ta.value = v === null || v === undefined ? "" : JSON.stringify(v, null, 2);
          ta.rows = Math.min(18, Math.max(3, ta.value.split("\n").length));
        },
      };
    }
    case "text":
    default: {
      const inp = h("input", { type: "text", id, name: def.name, class: "wide", "data-testid": tid, required: req || null });
      return {
        el: inp, focusEl: inp,
        get: () => inp.value.trim() || null,
        set: (v) => { inp.value = v === null || v === undefined ? "" : typeof v === "object" ? JSON.stringify(v) : String(v); },
      };
    }
  }
}

// 标准编码: three labelled codes instead of JSON
function codesWidget(def, id, tid) {
  // ICD-11 offers the codes of its half of chapter 26 (a disease's disorder codes, a syndrome's pattern codes)
  const lists = [];
  const inputs = Object.entries(CODE_LABELS).map(([key, label]) => {
    const attrs = { type: "text", id: `${id}-${key}`, "data-testid": `${tid}-${key}`, size: 14 };
    if (key === "icd11" && def.icd11_options) {
      attrs.list = `${id}-icd11-options`;
      lists.push(h("datalist", { id: attrs.list }, def.icd11_options.map(([code, title]) => h("option", { value: code, label: title }))));
    }
    const inp = h("input", attrs);
    return { key, inp, el: h("label", { for: `${id}-${key}`, class: "inline-field" }, `${label} `, inp) };
  });
  return {
    el: h("div", { class: "row", role: "group", "aria-labelledby": `${id}-label` }, inputs.map((x) => x.el), lists),
    focusEl: inputs[0].inp,
    get: () => {
      const out = {};
      for (const x of inputs) if (x.inp.value.trim()) out[x.key] = x.inp.value.trim();
      return Object.keys(out).length ? out : null;
    },
    set: (v) => inputs.forEach((x) => { x.inp.value = (v && v[x.key]) || ""; }),
  };
}

function ingredientsWidget(def, id, tid) {
  const tbody = h("tbody", {});
  const addRow = (item = {}) => {
    const n = tbody.children.length;
    const herb = h("input", { type: "text", value: item.herb || "", "aria-label": `第${n + 1}味 药名`, "data-testid": `${tid}-herb` });
    attachSuggest(herb, ["herb", "form"], true);
    const dose = h("input", { type: "number", min: 0, step: "any", value: item.dose_g ?? "", "aria-label": `第${n + 1}味 用量（克）`, "data-testid": `${tid}-dose` });
    const amount = h("input", { type: "text", value: item.amount || "", placeholder: "如 12枚", "aria-label": `第${n + 1}味 数量`, size: 6 });
    const role = h("select", { "aria-label": `第${n + 1}味 君臣佐使` }, h("option", { value: "" }, "—"), ROLES_ZH.map((r) => h("option", { value: r }, r)));
    role.value = item.role || "";
    const note = h("input", { type: "text", value: item.note || "", placeholder: "如 先煎", "aria-label": `第${n + 1}味 备注` });
    const del = h("button", { type: "button", class: "btn small", "aria-label": `删除第${n + 1}味`, onclick: () => tr.remove() }, "删除");
    const tr = h("tr", { "data-testid": `${tid}-row` }, h("td", {}, herb), h("td", {}, dose), h("td", {}, amount), h("td", {}, role), h("td", {}, note), h("td", {}, del));
    tr._get = () => {
      const o = { herb: herb.value.trim() };
      const d = num(dose.value, `${o.herb || "药味"} 用量`);
      if (!o.herb && d === null && !amount.value.trim()) return null;
      if (!o.herb) throw new FieldError("每一行都要填写药名");
      if (d !== null) {
        if (d <= 0) throw new FieldError(`${o.herb} 用量须大于 0`);
        o.dose_g = d;
      }
      if (amount.value.trim()) o.amount = amount.value.trim();
      if (d === null && !o.amount) throw new FieldError(`${o.herb}：请填写用量（克）或数量（如 12枚）`);
      if (role.value) o.role = role.value;
      if (note.value.trim()) o.note = note.value.trim();
      return o;
    };
    tbody.append(tr);
  };
  const table = h("table", { class: "ingredients", "data-testid": tid, "aria-labelledby": `${id}-label` },
    h("thead", {}, h("tr", {}, h("th", {}, "药名"), h("th", {}, "用量(克)"), h("th", {}, "数量"), h("th", {}, "君臣佐使"), h("th", {}, "备注"), h("th", {}, ""))),
    tbody);
  const add = h("button", { type: "button", class: "btn small", "data-testid": `${tid}-add`, onclick: () => addRow() }, "＋ 添加药味");
  return {
    el: h("div", {}, table, h("div", { class: "actions" }, add)),
    focusEl: table,
    get: () => [...tbody.children].map((tr) => tr._get()).filter(Boolean),
    set: (v) => {
      clear(tbody);
      (Array.isArray(v) ? v : []).forEach((i) => addRow(i));
      if (!tbody.children.length) addRow();
    },
  };
}

// An edit form for one kind: {el, widgets, read() -> {values, errors}, set(data), markChanged(base)}
function buildEntityForm(kind, data, { withDeprecation = false } = {}) {
  const fields = kindInfo(kind).fields.filter((f) => !f.readonly && f.name !== "id" && (withDeprecation || !DEPRECATION_FIELDS.includes(f.name)));
  const grid = h("div", { class: "form-grid", "data-testid": "entity-form" });
  const widgets = {};
  for (const def of fields) {
    const w = makeWidget(def, def.name);
    const usesGroup = ["multienum", "range", "ingredients", "source"].includes(def.type) || (def.type === "json" && def.name === "codes");
    const labelAttrs = { id: `f-${def.name}-label`, class: def.required ? "req" : null };
    const label = usesGroup
      ? h("div", { ...labelAttrs, class: `label${def.required ? " req" : ""}` }, def.label)
      : h("label", { ...labelAttrs, for: def.type === "list" || def.type === "json" || def.type === "bool" ? w.focusEl.id : `f-${def.name}` }, def.label);
    const err = h("span", { class: "field-error", role: "alert", "data-testid": `error-${def.name}` });
    const cell = h("div", { class: "field", "data-field": def.name }, w.el, def.help ? h("span", { class: "help" }, def.help) : null, err);
    w.def = def;
    w.errEl = err;
    w.label = label;
    widgets[def.name] = w;
    grid.append(label, cell);
  }
  const form = {
    el: grid,
    widgets,
    set(d) {
      for (const w of Object.values(widgets)) w.set(d ? d[w.def.name] : undefined);
    },
    read() {
      const values = {};
      const errors = {};
      for (const [name, w] of Object.entries(widgets)) {
        w.errEl.textContent = "";
        try {
          const v = w.get();
          if (w.def.required && isEmpty(v)) throw new FieldError("必填");
          values[name] = v;
        } catch (e) {
          if (!(e instanceof FieldError)) throw e;
          errors[name] = e.message;
          w.errEl.textContent = e.message;
        }
      }
      return { values, errors };
    },
  };
  form.set(data || {});
  return form;
}

// data / unset of an update against `base`
function diffAgainst(kind, base, values) {
  const data = {};
  const unset = [];
  for (const [name, v] of Object.entries(values)) {
    const def = fieldDef(kind, name) || { type: inferType(v) };
    const before = base[name];
    if (sameValue(before, v, def.type)) continue;
    if (def.type === "bool" && before === undefined && v === false) continue;
    if (isEmpty(v) && !def.required) {
      if (name in base) unset.push(name);
      continue;
    }
    data[name] = v;
  }
  return { data, unset };
}

function createData(values) {
  const data = {};
  for (const [k, v] of Object.entries(values)) {
    if (isEmpty(v) || v === false) continue;
    data[k] = v;
  }
  return data;
}

// The change-request description every submission carries.
function crMetaSection(prefix = "cr") {
  const title = h("input", { type: "text", id: `${prefix}-title`, class: "wide", required: true, "data-testid": `${prefix}-title`, placeholder: "如：甘草用量按药典2020修订" });
  const reason = h("textarea", { id: `${prefix}-reason`, rows: 3, required: true, "data-testid": `${prefix}-reason`, placeholder: "为什么要做这项修改" });
  const work = h("input", { type: "text", id: `${prefix}-work`, class: "wide", required: true, "data-testid": `${prefix}-work`, placeholder: "如：中华人民共和国药典" });
  const edition = h("input", { type: "text", id: `${prefix}-edition`, class: "wide", "data-testid": `${prefix}-edition`, placeholder: "如：2020年版 一部" });
  const locator = h("input", { type: "text", id: `${prefix}-locator`, class: "wide", "data-testid": `${prefix}-locator`, placeholder: "如：第 88 页" });
  const err = h("div", { class: "field-error", role: "alert", "data-testid": `${prefix}-error` });
  const el = h("section", { class: "panel", "aria-labelledby": `${prefix}-h`, "data-testid": `${prefix}-meta` },
    h("h2", { id: `${prefix}-h` }, "变更申请说明"),
    h("p", { class: "muted small" }, "每项修改都要写明标题、理由和出处，提交后由其他审核人审核，批准并发布后才生效。"),
    h("div", { class: "form-grid" },
      h("label", { for: title.id, class: "req" }, "标题"), title,
      h("label", { for: reason.id, class: "req" }, "理由"), reason,
      h("label", { for: work.id, class: "req" }, "出处：著作"), work,
      h("label", { for: edition.id }, "版本"), edition,
      h("label", { for: locator.id }, "页码/章节"), locator),
    err);
  return {
    el,
    get() {
      const t = title.value.trim();
      const r = reason.value.trim();
      const w = work.value.trim();
      const missing = [!t && "标题", !r && "理由", !w && "出处著作"].filter(Boolean);
      err.textContent = missing.length ? `请填写：${missing.join("、")}` : "";
      [title, reason, work].forEach((x) => x.classList.toggle("invalid", !x.value.trim()));
      if (missing.length) {
        (!t ? title : !r ? reason : work).focus();
        return null;
      }
      const source = { work: w };
      if (edition.value.trim()) source.edition = edition.value.trim();
      if (locator.value.trim()) source.locator = locator.value.trim();
      return { title: t, reason: r, source };
    },
    set(cr) {
      title.value = cr.title || "";
      reason.value = cr.reason || "";
      work.value = (cr.source && cr.source.work) || "";
      edition.value = (cr.source && cr.source.edition) || "";
      locator.value = (cr.source && cr.source.locator) || "";
    },
  };
}

// ---- session -------------------------------------------------------------------------------------------
function hasRole(...roles) {
  const mine = (state.me && state.me.roles) || [];
  return mine.includes("admin") || roles.some((r) => mine.includes(r));
}
function myName() {
  return state.me ? state.me.client : null;
}
async function showCurrentVersion() {
  try {
    const { data } = await api("GET", `${API}/releases?limit=1`);
    const cur = listOf(data, "releases").find((r) => r.current) || listOf(data, "releases")[0];
    if (cur && cur.version) $("#kbversion").textContent = `知识库版本 ${cur.version}`;
  } catch {
    /* the footer is informative only */
  }
}
function renderUserBox() {
  const logged = !!state.me;
  $("#nav").hidden = !logged;
  $("#userbox").hidden = !logged;
  const who = clear($("#whoami"));
  if (logged) {
    append(who, [h("span", { "data-testid": "whoami-client" }, state.me.client),
      (state.me.roles || []).map((r) => h("span", { class: "role", "data-role": r }, ROLE_LABEL[r] || r))]);
  }
}
function logout(message, remember = true) {
  leaveGuard = null;
  state.token = "";
  state.me = null;
  state.schema = null;
  sessionStorage.removeItem(TOKEN_KEY);
  renderUserBox();
  if (message) flash(message, "warn");
  if (location.hash !== "#/login") {
    state.afterLogin = remember && location.hash && !location.hash.startsWith("#/login") ? location.hash : null;
    location.hash = "#/login";
  }
}

// ---- router --------------------------------------------------------------------------------------------
const ROUTES = [
  [/^\/login$/, viewLogin, null],
  [/^\/search$/, viewSearch, "search"],
  [/^\/entity\/([^/]+)\/(.+)$/, viewEntity, "search"],
  [/^\/edit\/([^/]+)\/(.+)$/, viewEdit, "search"],
  [/^\/new(?:\/([^/]+))?$/, viewNew, "new"],
  [/^\/deprecate\/([^/]+)\/(.+)$/, viewDeprecate, "search"],
  [/^\/queue$/, viewQueue, "queue"],
  [/^\/cr\/(\d+)$/, viewCR, "queue"],
  [/^\/releases$/, viewReleases, "releases"],
  [/^\/release\/(.+)$/, viewRelease, "releases"],
];

function parseHash() {
  const raw = location.hash.replace(/^#/, "") || "/search";
  const [path, query] = raw.split("?");
  return { path, params: new URLSearchParams(query || "") };
}

// A page holding unsaved input sets leaveGuard (true while there is something to lose); leaving asks first.
let leaveGuard = null;
function confirmLeave() {
  if (!leaveGuard || !leaveGuard()) return true;
  if (!window.confirm("您有尚未提交的修改，离开此页会丢失这些修改。确定离开吗？")) return false;
  leaveGuard = null;
  return true;
}

let renderSeq = 0;
async function render() {
  const seq = ++renderSeq;
  leaveGuard = null;
  shownHash = location.hash;
  const { path, params } = parseHash();
  if (!state.token && path !== "/login") {
    state.afterLogin = location.hash || null;
    location.hash = "#/login";
    return;
  }
  if (state.token && !state.me && path !== "/login") {
    try {
      const { data } = await api("GET", `${API}/whoami`, { noAuthRedirect: true });
      state.me = data;
      renderUserBox();
      showCurrentVersion();
    } catch (e) {
      if (e.status === 401) return logout("令牌无效或已过期，请重新登录。");
      showView(problemBox(e));
      return;
    }
    if (seq !== renderSeq) return;
  }
  let match = null;
  for (const [re, fn, nav] of ROUTES) {
    const m = path.match(re);
    if (m) {
      match = { fn, nav, args: m.slice(1).map((x) => (x === undefined ? x : decodeURIComponent(x))) };
      break;
    }
  }
  document.querySelectorAll("#nav a").forEach((a) => a.classList.toggle("active", !!match && a.dataset.nav === match.nav));
  const root = h("div", { class: "page", "data-route": path });
  showView(root);
  if (!match) {
    root.append(h("h1", {}, "页面不存在"), h("p", {}, h("a", { href: "#/search" }, "返回浏览/搜索")));
    return;
  }
  root.append(h("p", { class: "muted", "data-testid": "loading" }, "正在加载…"));
  try {
    if (path !== "/login") await loadSchema();
    await match.fn(root, params, ...match.args);
    const loading = root.querySelector('[data-testid="loading"]');
    if (loading) loading.remove();
  } catch (e) {
    clear(root).append(problemBox(e));
  }
  root.dataset.ready = "1";
}
function showView(node) {
  const main = clear($("#view"));
  main.append(node);
}
function replaceLoading(root, ...nodes) {
  clear(root);
  append(root, nodes);
}

// ---- view: login ---------------------------------------------------------------------------------------
async function viewLogin(root) {
  const input = h("input", { type: "password", id: "login-token", class: "wide", autocomplete: "off", "data-testid": "login-token", placeholder: "tcm_…" });
  const out = h("div", { "data-testid": "login-result" });
  const submit = async (ev) => {
    ev.preventDefault();
    const token = input.value.trim();
    if (!token) {
      clear(out).append(h("div", { class: "error-box", role: "alert" }, "请粘贴访问令牌。"));
      return;
    }
    state.token = token;
    state.schema = null;
    try {
      const { data } = await api("GET", `${API}/whoami`, { noAuthRedirect: true });
      state.me = data;
      sessionStorage.setItem(TOKEN_KEY, token);
      renderUserBox();
      showCurrentVersion();
      clearFlash();
      flash(`已登录：${data.client}`);
      const next = state.afterLogin && !state.afterLogin.startsWith("#/login") ? state.afterLogin : "#/search";
      state.afterLogin = null;
      location.hash = next;
    } catch (e) {
      state.token = "";
      state.me = null;
      sessionStorage.removeItem(TOKEN_KEY);
      renderUserBox();
      clear(out).append(problemBox(e, "login-error"));
    }
  };
  const current = state.me
    ? h("div", { class: "ok-box", "data-testid": "login-current" }, `当前已登录：${state.me.client}（${(state.me.roles || []).map((r) => ROLE_LABEL[r] || r).join("、")}）。可输入其他令牌切换用户。`)
    : null;
  replaceLoading(root, h("section", { class: "panel login-card", "aria-labelledby": "login-h" },
    h("h1", { id: "login-h" }, "登录"),
    current,
    h("p", {}, "请粘贴管理员发给您的访问令牌（Bearer token）。令牌只保存在本浏览器标签页中，关闭标签页即失效。"),
    h("form", { onsubmit: submit, "data-testid": "login-form" },
      h("label", { for: "login-token" }, "访问令牌"),
      input,
      h("div", { class: "actions" }, h("button", { type: "submit", class: "btn primary", id: "btn-login", "data-testid": "login-submit" }, "登录"))),
    out));
  input.focus();
}

// ---- view: search --------------------------------------------------------------------------------------
async function viewSearch(root, params) {
  const q = params.get("q") || "";
  const kind = params.get("kind") || "";
  const input = h("input", { type: "search", id: "search-q", value: q, "data-testid": "search-q", placeholder: "名称、别名、拼音或编号，如 甘草 / gancao / 桂枝汤", "aria-label": "搜索" });
  const sel = h("select", { id: "search-kind", "data-testid": "search-kind", "aria-label": "类别" },
    h("option", { value: "" }, "全部类别"), kindsList().map((k) => h("option", { value: k }, kindLabel(k))));
  sel.value = kind;
  const go = (ev) => {
    ev.preventDefault();
    const p = new URLSearchParams();
    if (input.value.trim()) p.set("q", input.value.trim());
    if (sel.value) p.set("kind", sel.value);
    const next = `#/search?${p}`;
    if (location.hash === next) render();
    else location.hash = next;
  };
  sel.addEventListener("change", go);
  const results = h("div", { "data-testid": "search-results", "aria-live": "polite" });
  replaceLoading(root,
    h("h1", {}, "浏览/搜索"),
    h("form", { class: "searchbar panel", role: "search", onsubmit: go },
      input, sel, h("button", { type: "submit", class: "btn primary", "data-testid": "search-submit" }, "搜索")),
    results);
  input.focus();
  if (!q && !kind) {
    results.append(h("p", { class: "muted" }, "输入名称、别名、拼音或编号开始搜索，或选择一个类别浏览全部条目。"));
    return;
  }
  const qs = new URLSearchParams({ q, limit: "100" });
  if (kind) qs.set("kind", kind);
  const { data } = await api("GET", `${API}/entities?${qs}`);
  const items = listOf(data, "entities");
  if (!items.length) {
    results.append(h("p", { class: "muted", "data-testid": "search-empty" }, "没有找到匹配的条目。"));
    return;
  }
  const total = data && typeof data.total === "number" ? data.total : items.length;
  results.append(h("p", { class: "muted small", "data-testid": "search-count" }, total > items.length ? `共 ${total} 条，显示前 ${items.length} 条` : `共 ${total} 条`),
    h("ul", { class: "results panel" }, items.map((e) => h("li", { "data-testid": "search-result", "data-kind": e.kind, "data-id": e.id },
      badgeKind(e.kind),
      h("a", { class: "name", href: `#/entity/${enc(e.kind)}/${enc(e.id)}` }, e.name || e.id),
      h("span", { class: "mono muted" }, e.id),
      e.parent ? h("span", { class: "muted small" }, `属于 ${e.parent_name || e.parent}`) : null,
      e.deprecated ? h("span", { class: "badge deprecated" }, "已停用") : null,
      e.matched && e.matched !== e.name ? h("span", { class: "muted small" }, `匹配：${e.matched}`) : null))));
}

// ---- view: entity --------------------------------------------------------------------------------------
async function fetchEntity(kind, id) {
  const res = await api("GET", `${API}/entities/${enc(kind)}/${enc(id)}`);
  const ent = res.data;
  ent.etag = ent.etag || res.etag;
  if (ent.kb_version) $("#kbversion").textContent = `知识库版本 ${ent.kb_version}`;
  return ent;
}

async function viewEntity(root, _params, kind, id) {
  const [ent, nb] = await Promise.all([
    fetchEntity(kind, id),
    api("GET", `${API}/entities/${enc(kind)}/${enc(id)}/neighbourhood`).then((r) => r.data).catch((e) => ({ error: e })),
  ]);
  const info = kindInfo(kind);
  const data = ent.data || {};
  const shown = new Set();
  const rows = [];
  for (const def of info.fields) {
    shown.add(def.name);
    if (!(def.name in data)) continue;
    rows.push(h("dt", {}, def.label), h("dd", { "data-field": def.name, "data-testid": `value-${def.name}` }, fmtValue(def, data[def.name])));
  }
  for (const [k, v] of Object.entries(data)) {
    if (shown.has(k) || k === "id") continue;
    rows.push(h("dt", {}, k), h("dd", { "data-field": k, "data-testid": `value-${k}` }, fmtValue(null, v)));
  }
  const parentKind = info.parent;
  const parentNode = ent.parent && !nb.error ? listOf(nb.nodes || []).find((x) => x.key === `${parentKind}:${ent.parent}`) : null;
  const parentName = ent.parent_name || (parentNode && parentNode.name) || ent.parent;
  const actions = h("div", { class: "actions" });
  if (hasRole("curator")) {
    actions.append(h("a", { class: "btn primary", href: `#/edit/${enc(kind)}/${enc(id)}`, "data-testid": "btn-edit" }, "编辑"));
    if (!ent.deprecated) actions.append(h("a", { class: "btn", href: `#/deprecate/${enc(kind)}/${enc(id)}`, "data-testid": "btn-deprecate" }, "停用"));
    for (const ck of childKinds(kind)) {
      actions.append(h("a", { class: "btn", href: `#/new/${enc(ck)}?parent=${enc(id)}`, "data-testid": `btn-new-${ck}` }, `新建${kindLabel(ck)}`));
    }
  }
  const pending = ent.pending || [];
  replaceLoading(root,
    h("div", { class: "row" },
      badgeKind(kind),
      h("h1", { "data-testid": "entity-name" }, ent.name || id),
      h("span", { class: "mono muted", "data-testid": "entity-id" }, id),
      ent.deprecated ? h("span", { class: "badge deprecated", "data-testid": "deprecated" }, "已停用") : null),
    ent.deprecated
      ? h("div", { class: "warn-box", "data-testid": "deprecated-box" },
        h("strong", {}, "此条目已停用"),
        ent.replaced_by
          ? h("span", {}, "替代条目：", h("a", { href: `#/entity/${enc(kind)}/${enc(ent.replaced_by)}`, "data-testid": "replaced-by" }, ent.replaced_by_name ? `${ent.replaced_by_name}（${ent.replaced_by}）` : ent.replaced_by))
          : h("span", {}, "没有替代条目。"),
        data.deprecation_reason || ent.deprecation_reason ? h("div", {}, `原因：${data.deprecation_reason || ent.deprecation_reason}`) : null)
      : null,
    ent.parent
      ? h("p", {}, "所属：", parentKind && state.schema.kinds[parentKind]
        ? h("a", { href: `#/entity/${enc(parentKind)}/${enc(ent.parent)}`, "data-testid": "parent-link" }, `${kindLabel(parentKind)} ${parentName}`)
        : h("span", { class: "mono" }, ent.parent))
      : null,
    actions,
    pending.length
      ? h("div", { class: "warn-box", "data-testid": "pending" },
        h("strong", {}, "待处理的变更申请"),
        h("span", {}, pending.map((p, i) => {
          const pid = typeof p === "object" ? p.id : p;
          const title = typeof p === "object" && p.title ? ` ${p.title}` : "";
          return [i ? "、" : "", h("a", { href: `#/cr/${pid}` }, `#${pid}${title}`)];
        })))
      : null,
    h("div", { class: `grid2${listOf((nb && nb.nodes) || []).length > 17 ? " wide-graph" : ""}` },
      h("section", { class: "panel", "aria-labelledby": "fields-h" },
        h("h2", { id: "fields-h" }, "内容"),
        h("dl", { class: "fields", "data-testid": "entity-fields" }, rows),
        childKinds(kind).length || (ent.children || []).length
          ? [h("h2", {}, "下属条目"),
            (ent.children || []).length
              ? h("ul", { "data-testid": "children" }, ent.children.map((c) => h("li", {}, badgeKind(c.kind), " ",
                h("a", { href: `#/entity/${enc(c.kind)}/${enc(c.id)}` }, c.name || c.id), " ", h("span", { class: "mono muted" }, c.id),
                c.deprecated ? [" ", h("span", { class: "badge deprecated" }, "已停用")] : null)))
              : h("p", { class: "muted" }, "无")]
          : null,
        h("h2", {}, "版本信息"),
        h("div", { class: "kv small" },
          h("span", {}, "发布版本"), h("span", { "data-testid": "entity-release" }, ent.release || "—"),
          h("span", {}, "知识库版本"), h("span", { class: "mono", "data-testid": "entity-kb-version" }, ent.kb_version || "—"),
          h("span", {}, "内容文件"), h("span", { class: "mono" }, ent.file || "—"),
          h("span", {}, "ETag"), h("span", { class: "mono", "data-testid": "entity-etag" }, ent.etag || "—"))),
      h("section", { class: "panel", "aria-labelledby": "graph-h" },
        h("h2", { id: "graph-h" }, "关系图"),
        nb.error ? problemBox(nb.error) : drawGraph(nb, ent))));
  // name the replacement (the entity only gives its id)
  if (ent.replaced_by && !ent.replaced_by_name) {
    api("GET", `${API}/entities/${enc(kind)}/${enc(ent.replaced_by)}`)
      .then(({ data: r }) => {
        const a = root.querySelector('[data-testid="replaced-by"]');
        if (a && r && r.name) a.textContent = `${r.name}（${ent.replaced_by}）`;
      })
      .catch(() => {});
  }
}

// Radial layout of the neighbourhood: the entity in the middle, its neighbours on rings around it.
function drawGraph(nb, ent) {
  const nodes = listOf(nb.nodes || []);
  const edges = listOf(nb.edges || []);
  const centerKey = nb.center || `${ent.kind}:${ent.id}`;
  const centre = nodes.find((n) => n.key === centerKey) || { key: centerKey, kind: ent.kind, id: ent.id, name: ent.name };
  const others = nodes.filter((n) => n.key !== centre.key);
  // group neighbours: by kind, then by how they are linked to the centre, then by name
  const relOf = new Map();
  for (const e of edges) {
    const other = e.source === centre.key ? e.target : e.target === centre.key ? e.source : null;
    if (other && !relOf.has(other)) relOf.set(other, e.rel || "");
  }
  const kindOrder = [...kindsList(), "principle"];
  const rankKind = (k) => (kindOrder.includes(k) ? kindOrder.indexOf(k) : kindOrder.length);
  others.sort((a, b) => rankKind(a.kind) - rankKind(b.kind)
    || String(relOf.get(a.key) || "").localeCompare(String(relOf.get(b.key) || ""))
    || String(a.name).localeCompare(String(b.name), "zh"));
  const n = others.length;
  const many = n > 16;
  // rings: as many as needed, each holding nodes in proportion to its circumference
  const R0 = n <= 6 ? 140 : 170;
  const GAP = 85;
  const SPACING = 62;
  const rings = [];
  let capacity = 0;
  while (capacity < n) {
    const r = R0 + rings.length * GAP;
    const cap = Math.max(6, Math.floor((2 * Math.PI * r) / SPACING));
    rings.push({ r, cap, count: 0 });
    capacity += cap;
  }
  let left = n;
  rings.forEach((ring, i) => {
    ring.count = i === rings.length - 1 ? left : Math.min(left, Math.round((n * ring.cap) / capacity));
    left -= ring.count;
  });
  const Rmax = rings.length ? rings[rings.length - 1].r : R0;
  const W = Math.max(many ? 1000 : 640, 2 * Rmax + 160);
  const H = 2 * Rmax + (n ? 120 : 0) + 60;
  const cx = W / 2;
  const cy = H / 2;
  const pos = new Map([[centre.key, { x: cx, y: cy, r: 24 }]]);
  let idx = 0;
  rings.forEach((ring, k) => {
    for (let j = 0; j < ring.count; j += 1) {
      const angle = -Math.PI / 2 + (2 * Math.PI * j) / ring.count + (k % 2 ? Math.PI / ring.count : 0);
      pos.set(others[idx].key, { x: cx + ring.r * Math.cos(angle), y: cy + ring.r * Math.sin(angle), r: many ? 11 : 14, angle });
      idx += 1;
    }
  });
  const svgEl = s("svg", {
    class: `graph${many ? " many" : ""}`, viewBox: `0 0 ${W} ${H}`, role: "group",
    "aria-label": `${centre.name} 的关系图：${n} 个关联条目`, "data-testid": "graph",
  },
  s("defs", {}, s("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" },
    s("path", { d: "M 0 0 L 10 5 L 0 10 z", fill: "#a8a29e" }))));
  const gEdges = s("g", { class: "edges" });
  const gNodes = s("g", { class: "nodes" });
  for (const e of edges) {
    const a = pos.get(e.source);
    const b = pos.get(e.target);
    if (!a || !b) continue;
    const dx = b.x - a.x;
    const dy = b.y - a.y;
    const len = Math.hypot(dx, dy) || 1;
    const x1 = a.x + (dx / len) * a.r;
    const y1 = a.y + (dy / len) * a.r;
    const x2 = b.x - (dx / len) * (b.r + 3);
    const y2 = b.y - (dy / len) * (b.r + 3);
    const label = relLabel(e);
    // with many neighbours only the labels that differ from the common one are written on the lines
    gEdges.append(s("g", { class: "edge", "data-testid": "graph-edge", "data-rel": e.rel || "" },
      s("line", { x1, y1, x2, y2, "marker-end": "url(#arrow)" }),
      label && !many && e.source !== centre.key && e.target !== centre.key
        ? s("text", { x: (x1 + x2) / 2, y: (y1 + y2) / 2 - 3, "text-anchor": "middle" }, label) : null,
      s("title", {}, label)));
  }
  for (const node of [centre, ...others]) {
    const p = pos.get(node.key);
    const isCentre = node.key === centre.key;
    const name = String(node.name || node.id);
    const max = many ? 6 : 9;
    const short = name.length > max ? `${name.slice(0, max - 1)}…` : name;
    const linkable = !isCentre && !!state.schema && node.kind in state.schema.kinds;
    const go = () => {
      if (linkable) location.hash = `#/entity/${enc(node.kind)}/${enc(node.id)}`;
    };
    const below = isCentre || Math.sin(p.angle ?? 1) >= -0.2;
    const edgeTo = edges.find((e) => (e.source === centre.key && e.target === node.key) || (e.target === centre.key && e.source === node.key));
    gNodes.append(s("g", {
      class: `node${isCentre ? " center" : ""}${linkable ? " link" : ""}`, tabindex: linkable ? 0 : null, role: linkable ? "link" : null,
      "aria-label": `${kindLabel(node.kind)} ${name}`, "data-testid": "graph-node", "data-key": node.key, "data-kind": node.kind, "data-id": node.id,
      onclick: go, onkeydown: (ev) => { if (ev.key === "Enter" || ev.key === " ") { ev.preventDefault(); go(); } },
    },
    s("circle", { cx: p.x, cy: p.y, r: p.r, fill: KIND_COLOURS[node.kind] || "#6b7280", opacity: node.deprecated ? 0.45 : 1 }),
    s("text", { x: p.x, y: below ? p.y + p.r + 14 : p.y - p.r - 17, "text-anchor": "middle" }, short),
    !isCentre && edgeTo && relLabel(edgeTo)
      ? s("text", { class: "rel", x: p.x, y: below ? p.y + p.r + 27 : p.y - p.r - 5, "text-anchor": "middle" },
        relLabel(edgeTo))
      : null,
    s("title", {}, `${kindLabel(node.kind)}：${name}（${node.id}）${edgeTo && relLabel(edgeTo) ? ` · ${relLabel(edgeTo)}` : ""}${node.deprecated ? " · 已停用" : ""}`)));
  }
  svgEl.append(gEdges, gNodes);
  const kindsPresent = [...new Set([centre, ...others].map((x) => x.kind))];
  const counts = {};
  others.forEach((x) => { counts[x.kind] = (counts[x.kind] || 0) + 1; });
  // the same neighbourhood as a list (screen readers, and finding a name among many)
  const asList = n
    ? h("details", { class: "graph-list", "data-testid": "graph-list" }, h("summary", {}, `以列表查看 ${n} 个关联条目`),
      h("ul", {}, others.map((x) => {
        const e = edges.find((y) => (y.source === centre.key && y.target === x.key) || (y.target === centre.key && y.source === x.key));
        const linkable = !!state.schema && x.kind in state.schema.kinds;
        return h("li", {}, badgeKind(x.kind), " ",
          linkable ? h("a", { href: `#/entity/${enc(x.kind)}/${enc(x.id)}` }, x.name || x.id) : (x.name || x.id),
          e && relLabel(e) ? h("span", { class: "muted small" }, ` ${e.source === centre.key ? "→" : "←"} ${relLabel(e)}`) : null);
      })))
    : null;
  return h("div", { class: "graph-wrap" }, svgEl,
    n ? null : h("p", { class: "muted small graph-empty" }, "没有关联条目。"),
    asList,
    h("div", { class: "legend" },
      kindsPresent.map((k) => h("span", {}, swatch(k), kindLabel(k), counts[k] ? ` ${counts[k]}` : "")),
      many ? h("span", { class: "muted" }, "（悬停或聚焦节点可查看关系；点击节点打开条目）") : h("span", { class: "muted" }, "（点击节点打开条目）"),
      n + 1 >= 80 ? h("span", { class: "muted", "data-testid": "graph-truncated" }, "只显示前 80 个关联") : null));
}

const REL_LABEL = {
  contains: "含", form_of: "炮制品", has_syndrome: "证型", argues_against: "不支持", incompatible: "十八反",
  incompatibility: "十八反", antagonism: "十九畏", treated_by: "治法", treated_with: "治疗方", indicates: "症",
  controlled: "毒性药品", banned: "禁用", broader: "上位", opposite: "相反", member: "成员",
};
function relLabel(e) {
  const label = e.label || "";
  if (label && label !== e.rel) return label;
  return REL_LABEL[e.rel] || label || e.rel || "";
}

// ---- view: edit ----------------------------------------------------------------------------------------
async function viewEdit(root, _params, kind, id) {
  const ent = await fetchEntity(kind, id);
  let base = ent.data || {};
  let etag = ent.etag;
  const form = buildEntityForm(kind, base, { withDeprecation: !!ent.deprecated });
  const meta = crMetaSection("cr");
  const status = h("div", { "data-testid": "edit-status", "aria-live": "polite" });
  const conflictArea = h("div", { "data-testid": "conflict-area" });
  const submitBtn = h("button", { type: "submit", class: "btn primary", id: "btn-submit", "data-testid": "btn-submit" }, "提交审核");
  const baseInfo = h("span", { class: "mono small muted", "data-testid": "edit-etag" }, `基于版本 ${etag || "?"}`);
  let submitted = false;

  const onSubmit = async (ev) => {
    ev.preventDefault();
    clear(status);
    const { values, errors } = form.read();
    if (Object.keys(errors).length) {
      status.append(h("div", { class: "error-box", role: "alert", "data-testid": "form-errors" }, h("strong", {}, "请先修正表单中的问题："),
        h("ul", {}, Object.entries(errors).map(([k, m]) => h("li", {}, `${fieldLabel(kind, k)}：${m}`)))));
      return;
    }
    const { data, unset } = diffAgainst(kind, base, values);
    if (!Object.keys(data).length && !unset.length) {
      status.append(h("div", { class: "warn-box", role: "alert", "data-testid": "no-changes" }, "没有修改任何内容。"));
      return;
    }
    const m = meta.get();
    if (!m) return;
    submitBtn.disabled = true;
    try {
      const body = { ...m, data };
      if (unset.length) body.unset = unset;
      const { data: cr } = await api("PUT", `${API}/entities/${enc(kind)}/${enc(id)}`, { body, headers: { "If-Match": `"${etag}"` } });
      flash(`已提交变更申请 #${cr.id}${cr.validation && cr.validation.ok === false ? "（校验未通过，请查看问题）" : ""}`, cr.validation && cr.validation.ok === false ? "warn" : "ok");
      submitted = true;
      location.hash = `#/cr/${cr.id}`;
    } catch (e) {
      if (e.status === 412) showConflict(e);
      else status.append(problemBox(e, "submit-error"));
    } finally {
      submitBtn.disabled = false;
    }
  };

  function showConflict(err) {
    clear(conflictArea);
    const current = err.problem && err.problem.current_etag;
    const cmp = h("div", { "data-testid": "conflict-compare" });
    const loadBtn = h("button", { type: "button", class: "btn", "data-testid": "btn-load-current", onclick: () => loadCurrent() }, "载入当前版本对照");
    conflictArea.append(h("div", { class: "warn-box", role: "alert", "data-testid": "conflict" },
      h("strong", {}, "提交失败：该条目在您编辑期间已被他人修改。"),
      h("div", {}, "您填写的内容仍保留在下方表单中，没有丢失。请载入当前版本，对照后再决定如何提交。"),
      current ? h("div", { class: "mono small" }, `当前版本 ${current}（您的修改基于 ${etag}）`) : null,
      h("div", { class: "actions" }, loadBtn)),
    cmp);
    conflictArea.scrollIntoView({ block: "start" });

    async function loadCurrent() {
      clear(cmp).append(h("p", { class: "muted" }, "正在载入当前版本…"));
      let cur;
      try {
        cur = await fetchEntity(kind, id);
      } catch (e) {
        clear(cmp).append(problemBox(e));
        return;
      }
      const { values } = form.read();
      const curData = cur.data || {};
      const rows = [];
      for (const w of Object.values(form.widgets)) {
        const name = w.def.name;
        const mine = values[name];
        const theirs = curData[name];
        const userChanged = !sameValue(base[name], mine, w.def.type);
        const otherChanged = !sameValue(base[name], theirs, w.def.type);
        if (!userChanged && !otherChanged) continue;
        rows.push(h("tr", { class: !sameValue(theirs, mine, w.def.type) ? "differs" : null, "data-field": name },
          h("th", { scope: "row" }, w.def.label),
          h("td", {}, fmtValue(w.def, base[name])),
          h("td", { "data-testid": "current-value" }, fmtValue(w.def, theirs), otherChanged ? h("div", { class: "changed-mark" }, "（他人已修改）") : null),
          h("td", { "data-testid": "draft-value" }, fmtValue(w.def, mine), userChanged ? h("div", { class: "changed-mark" }, "（您的修改）") : null)));
      }
      const rebase = () => {
        const merged = {};
        for (const w of Object.values(form.widgets)) {
          const name = w.def.name;
          merged[name] = !sameValue(base[name], values[name], w.def.type) ? values[name] : curData[name];
        }
        base = curData;
        etag = cur.etag;
        form.set(merged);
        updateMarks();
        baseInfo.textContent = `基于版本 ${etag}`;
        clear(conflictArea);
        clear(status).append(h("div", { class: "ok-box", "data-testid": "rebased" }, "已基于当前版本保留您的修改，请检查后重新提交。"));
      };
      const discard = () => {
        base = curData;
        etag = cur.etag;
        form.set(curData);
        updateMarks();
        baseInfo.textContent = `基于版本 ${etag}`;
        clear(conflictArea);
        clear(status).append(h("div", { class: "ok-box" }, "已载入当前版本，您的草稿已放弃。"));
      };
      clear(cmp).append(h("section", { class: "panel", "data-testid": "conflict-table" },
        h("h3", {}, "当前版本与您的草稿对照"),
        rows.length
          ? h("table", { class: "compare" }, h("thead", {}, h("tr", {}, h("th", {}, "字段"), h("th", {}, "您编辑时的版本"), h("th", {}, "当前版本"), h("th", {}, "您的草稿"))), h("tbody", {}, rows))
          : h("p", { class: "muted" }, "没有字段差异。"),
        h("div", { class: "actions" },
          h("button", { type: "button", class: "btn primary", "data-testid": "btn-rebase", onclick: rebase }, "保留我的修改，基于当前版本重新提交"),
          h("button", { type: "button", class: "btn", "data-testid": "btn-discard", onclick: discard }, "放弃草稿，使用当前版本"))));
    }
  }

  // mark the fields the user changed
  const updateMarks = () => {
    for (const w of Object.values(form.widgets)) {
      let changed = false;
      try {
        changed = !sameValue(base[w.def.name], w.get(), w.def.type);
      } catch {
        changed = true;
      }
      const mark = w.label.querySelector(".changed-mark");
      if (changed && !mark) w.label.append(h("span", { class: "changed-mark", "data-testid": "changed-mark" }, "已修改"));
      if (!changed && mark) mark.remove();
    }
  };
  for (const evName of ["input", "change", "click"]) form.el.addEventListener(evName, () => setTimeout(updateMarks, 0));
  form.updateMarks = updateMarks;
  leaveGuard = () => !submitted && Object.values(form.widgets).some((w) => {
    try {
      return !sameValue(base[w.def.name], w.get(), w.def.type);
    } catch {
      return true;
    }
  });

  replaceLoading(root,
    h("div", { class: "row" }, badgeKind(kind), h("h1", {}, `编辑：${ent.name || id}`), h("span", { class: "mono muted" }, id), h("span", { class: "spacer" }), baseInfo),
    ent.deprecated ? h("div", { class: "warn-box" }, "注意：此条目已停用。") : null,
    (ent.pending || []).length ? h("div", { class: "warn-box" }, "此条目已有待处理的变更申请：", (ent.pending || []).map((p) => h("a", { href: `#/cr/${typeof p === "object" ? p.id : p}` }, ` #${typeof p === "object" ? p.id : p}`))) : null,
    conflictArea,
    h("form", { onsubmit: onSubmit, novalidate: true, "data-testid": "edit-form" },
      h("section", { class: "panel", "aria-labelledby": "edit-h" }, h("h2", { id: "edit-h" }, `${kindLabel(kind)}内容`), form.el),
      meta.el,
      status,
      h("div", { class: "actions" }, submitBtn, h("a", { class: "btn", href: `#/entity/${enc(kind)}/${enc(id)}` }, "取消"))));
}

// ---- view: create --------------------------------------------------------------------------------------
async function viewNew(root, params, kind) {
  if (!kind) {
    replaceLoading(root, h("h1", {}, "新建条目"), h("p", {}, "请选择要新建的类别："),
      h("div", { class: "actions" }, kindsList().map((k) => h("a", { class: "btn", href: `#/new/${enc(k)}`, "data-testid": `new-kind-${k}` }, kindLabel(k)))));
    return;
  }
  const info = kindInfo(kind);
  const idInput = h("input", { type: "text", id: "new-id", class: "wide", required: true, "data-testid": "new-id", placeholder: "小写拼音，如 xinyi", pattern: "[a-z][a-z0-9]*([-_.][a-z0-9]+)*" });
  const parentInput = info.parent ? h("input", { type: "text", id: "new-parent", class: "wide", required: true, "data-testid": "new-parent", value: params.get("parent") || "" }) : null;
  if (parentInput && state.schema.kinds[info.parent]) attachSuggest(parentInput, [info.parent], false);
  const form = buildEntityForm(kind, {});
  const meta = crMetaSection("cr");
  const status = h("div", { "data-testid": "edit-status" });
  const onSubmit = async (ev) => {
    ev.preventDefault();
    clear(status);
    const problems = [];
    const newId = idInput.value.trim();
    if (!/^[a-z][a-z0-9]*(?:[-_.][a-z0-9]+)*$/.test(newId)) problems.push("编号：只能用小写字母、数字和 - _ .，以字母开头");
    if (parentInput && !parentInput.value.trim()) problems.push(`所属${kindLabel(info.parent) || ""}：必填`);
    const { values, errors } = form.read();
    for (const [k, m] of Object.entries(errors)) problems.push(`${fieldLabel(kind, k)}：${m}`);
    if (problems.length) {
      status.append(h("div", { class: "error-box", role: "alert", "data-testid": "form-errors" }, h("strong", {}, "请先修正表单中的问题："), h("ul", {}, problems.map((p) => h("li", {}, p)))));
      return;
    }
    const m = meta.get();
    if (!m) return;
    const edit = { op: "create", kind, id: newId, data: createData(values) };
    if (parentInput) edit.parent = parentInput.value.trim();
    try {
      const { data: cr } = await api("POST", `${API}/change-requests`, { body: { ...m, edits: [edit] } });
      flash(`已提交变更申请 #${cr.id}`, cr.validation && cr.validation.ok === false ? "warn" : "ok");
      leaveGuard = null;
      location.hash = `#/cr/${cr.id}`;
    } catch (e) {
      status.append(problemBox(e, "submit-error"));
    }
  };
  leaveGuard = () => !!idInput.value.trim() || Object.values(form.widgets).some((w) => {
    try {
      const v = w.get();
      return !isEmpty(v) && v !== false;
    } catch {
      return true;
    }
  });
  replaceLoading(root,
    h("div", { class: "row" }, badgeKind(kind), h("h1", {}, `新建${kindLabel(kind)}`)),
    h("form", { onsubmit: onSubmit, novalidate: true, "data-testid": "new-form" },
      h("section", { class: "panel" },
        h("div", { class: "form-grid" },
          h("label", { for: "new-id", class: "req" }, "编号"), h("div", {}, idInput, h("span", { class: "help" }, "条目的永久编号，创建后不能修改")),
          parentInput ? [h("label", { for: "new-parent", class: "req" }, `所属${kindLabel(info.parent)}（编号）`), parentInput] : null),
        h("h2", {}, `${kindLabel(kind)}内容`),
        form.el),
      meta.el,
      status,
      h("div", { class: "actions" }, h("button", { type: "submit", class: "btn primary", "data-testid": "btn-submit" }, "提交审核"), h("a", { class: "btn", href: "#/search" }, "取消"))));
}

// ---- view: deprecate -----------------------------------------------------------------------------------
async function viewDeprecate(root, _params, kind, id) {
  let ent = await fetchEntity(kind, id);
  const repl = h("input", { type: "text", id: "dep-replaced-by", class: "wide", "data-testid": "dep-replaced-by", placeholder: `替代的${kindLabel(kind)}编号（没有可留空）` });
  attachSuggest(repl, [kind], false);
  const why = h("textarea", { id: "dep-reason", rows: 3, required: true, "data-testid": "dep-reason" });
  const meta = crMetaSection("cr");
  const status = h("div", { "data-testid": "edit-status" });
  const onSubmit = async (ev) => {
    ev.preventDefault();
    clear(status);
    if (!why.value.trim()) {
      status.append(h("div", { class: "error-box", role: "alert" }, "请填写停用原因。"));
      why.focus();
      return;
    }
    const m = meta.get();
    if (!m) return;
    const edit = { op: "deprecate", kind, id, base_etag: ent.etag, data: { replaced_by: repl.value.trim() || null, reason: why.value.trim() } };
    try {
      const { data: cr } = await api("POST", `${API}/change-requests`, { body: { ...m, edits: [edit] } });
      flash(`已提交停用申请 #${cr.id}`, cr.validation && cr.validation.ok === false ? "warn" : "ok");
      leaveGuard = null;
      location.hash = `#/cr/${cr.id}`;
    } catch (e) {
      if (e.status === 412) {
        status.append(h("div", { class: "warn-box", role: "alert", "data-testid": "conflict" },
          h("strong", {}, "该条目在此期间已被他人修改。"), "您填写的内容仍保留。",
          h("button", { type: "button", class: "btn small", "data-testid": "btn-load-current", onclick: async () => {
            ent = await fetchEntity(kind, id);
            clear(status).append(h("div", { class: "ok-box" }, `已载入当前版本（${ent.etag}），可重新提交。`));
          } }, "载入当前版本")));
      } else status.append(problemBox(e, "submit-error"));
    }
  };
  leaveGuard = () => !!(why.value.trim() || repl.value.trim());
  replaceLoading(root,
    h("div", { class: "row" }, badgeKind(kind), h("h1", {}, `停用：${ent.name || id}`), h("span", { class: "mono muted" }, id)),
    h("p", {}, "停用不会删除条目：它仍可查询，但会标记为已停用，并指向替代条目。"),
    h("form", { onsubmit: onSubmit, novalidate: true, "data-testid": "deprecate-form" },
      h("section", { class: "panel" }, h("div", { class: "form-grid" },
        h("label", { for: "dep-replaced-by" }, "替代条目"), repl,
        h("label", { for: "dep-reason", class: "req" }, "停用原因"), why)),
      meta.el,
      status,
      h("div", { class: "actions" }, h("button", { type: "submit", class: "btn danger", "data-testid": "btn-submit" }, "提交停用申请"), h("a", { class: "btn", href: `#/entity/${enc(kind)}/${enc(id)}` }, "取消"))));
}

// ---- view: queue ---------------------------------------------------------------------------------------
const QUEUE_TABS = ["open", "approved", "rejected", "conflict", "released", "withdrawn", "all"];
async function viewQueue(root, params) {
  const status = params.get("status") || "open";
  const qs = status === "all" ? "" : `?status=${enc(status)}`;
  const { data } = await api("GET", `${API}/change-requests${qs}`);
  const items = listOf(data, "change_requests");
  replaceLoading(root,
    h("h1", {}, "审核队列"),
    h("nav", { class: "tabs", "aria-label": "按状态筛选" }, QUEUE_TABS.map((st) => h("a", {
      href: `#/queue?status=${st}`, class: st === status ? "active" : null, "aria-current": st === status ? "page" : null, "data-testid": `queue-tab-${st}`,
    }, st === "all" ? "全部" : STATUS_LABEL[st]))),
    items.length
      ? h("table", { "data-testid": "queue-table" },
        h("thead", {}, h("tr", {}, h("th", {}, "编号"), h("th", {}, "标题"), h("th", {}, "提交人"), h("th", {}, "状态"), h("th", {}, "校验"), h("th", {}, "更新时间"))),
        h("tbody", {}, items.map((cr) => h("tr", { "data-testid": "queue-row", "data-id": cr.id },
          h("td", { class: "num" }, h("a", { href: `#/cr/${cr.id}` }, `#${cr.id}`)),
          h("td", {}, h("a", { href: `#/cr/${cr.id}`, "data-testid": `cr-link-${cr.id}` }, cr.title || "（无标题）"),
            cr.author === myName() ? h("span", { class: "muted small" }, "（我提交的）") : null),
          h("td", {}, cr.author || "—"),
          h("td", {}, badgeStatus(cr.status)),
          h("td", {}, cr.validation ? (cr.validation.ok ? h("span", { class: "ok-text" }, "通过") : h("span", { class: "err-text" }, "未通过")) : muted("—")),
          h("td", { class: "small nowrap" }, fmtTime(cr.updated_at || cr.created_at))))))
      : h("p", { class: "muted panel", "data-testid": "queue-empty" }, "没有该状态的变更申请。"));
}

// ---- view: change request ------------------------------------------------------------------------------
function diffTables(diff, testid = "diff-table") {
  const entries = listOf(diff || []);
  if (!entries.length) return h("p", { class: "muted", "data-testid": `${testid}-empty` }, "没有差异。");
  return entries.map((d) => {
    const fields = listOf(d.fields || []);
    return h("div", { class: "diff-entity", "data-testid": "diff-entity", "data-kind": d.kind, "data-id": d.id },
      h("h3", { class: "row" }, badgeKind(d.kind),
        h("a", { href: `#/entity/${enc(d.kind)}/${enc(d.id)}` }, d.name || d.id), h("span", { class: "mono muted small" }, d.id),
        h("span", { class: "badge" }, CHANGE_LABEL[d.change] || d.change || "")),
      fields.length
        ? h("table", { "data-testid": testid },
          h("thead", {}, h("tr", {}, h("th", { class: "col-field" }, "字段"), h("th", {}, "修改前"), h("th", {}, "修改后"))),
          h("tbody", {}, fields.map((f) => {
            const def = fieldDef(d.kind, f.field);
            return h("tr", { "data-field": f.field },
              h("th", { scope: "row" }, def ? def.label : f.field, def ? h("div", { class: "mono muted small" }, f.field) : null),
              h("td", { class: "before", "data-testid": "diff-before" }, fmtDiffSide(def, f.before, f.after, "del")),
              h("td", { class: "after", "data-testid": "diff-after" }, fmtDiffSide(def, f.after, f.before, "ins")));
          })))
        : null);
  });
}

// One side of a field's diff: lists mark the items the other side lacks (removed / added).
function fmtDiffSide(def, value, other, mark) {
  const type = (def && def.type) || inferType(value);
  if (!Array.isArray(value) || !Array.isArray(other) || !value.length) return fmtValue(def, value);
  const theirs = new Set(other.map(canonical));
  if (type === "list" || type === "multienum") {
    return value.map((x, i) => [i ? "、" : "", theirs.has(canonical(x))
      ? (type === "multienum" ? optionLabel(def, x) : String(x))
      : h(mark, { class: `diff-${mark}` }, type === "multienum" ? optionLabel(def, x) : String(x))]);
  }
  if (type === "ingredients") {
    const table = fmtValue(def, value);
    const rows = table.querySelectorAll ? table.querySelectorAll("tbody tr") : [];
    value.forEach((x, i) => { if (!theirs.has(canonical(x)) && rows[i]) rows[i].classList.add(`diff-row-${mark}`); });
    return table;
  }
  return fmtValue(def, value);
}

function editSummary(e) {
  const parts = [h("span", { class: "badge" }, OP_LABEL[e.op] || e.op), " ", badgeKind(e.kind), " ",
    h("a", { href: `#/entity/${enc(e.kind)}/${enc(e.id)}` }, e.id)];
  if (e.parent) parts.push(h("span", { class: "muted small" }, ` （属于 ${e.parent}）`));
  const body = [];
  if (e.data && Object.keys(e.data).length) {
    body.push(h("dl", { class: "fields small" }, Object.entries(e.data).map(([k, v]) => {
      const def = fieldDef(e.kind, k);
      const label = k === "replaced_by" ? "替代条目" : k === "reason" && e.op === "deprecate" ? "停用原因" : def ? def.label : k;
      return [h("dt", {}, label), h("dd", {}, fmtValue(def, v))];
    })));
  }
  if (e.unset && e.unset.length) body.push(h("p", { class: "small" }, "恢复默认/继承：", e.unset.map((k) => fieldLabel(e.kind, k)).join("、")));
  if (e.relation) {
    const def = fieldDef(e.kind, e.relation);
    const v = def && (def.type === "ingredients" || def.type === "list") && !Array.isArray(e.value) ? [e.value] : e.value;
    body.push(h("div", { class: "small" }, `${fieldLabel(e.kind, e.relation)}：`, fmtValue(def, v)));
  }
  return h("li", { "data-testid": "edit-item" }, h("div", { class: "row" }, parts), body);
}

async function viewCR(root, _params, crId) {
  const res = await api("GET", `${API}/change-requests/${enc(crId)}`);
  const cr = res.data;
  const revision = res.etag || (cr.revision != null ? String(cr.revision) : null);
  const me = myName();
  const isAuthor = !!me && cr.author === me;
  const v = cr.validation || null;
  const out = h("div", { "data-testid": "cr-action-result", "aria-live": "polite" });

  const against = v && v.checked_against ? `（对照版本 ${v.checked_against}${v.checked_at ? `，${fmtTime(v.checked_at)}` : ""}）` : "";
  const warnings = v ? listOf(v.warnings || []) : [];
  const validationBox = !v
    ? h("p", { class: "muted" }, "尚未校验。")
    : [v.ok
      ? h("div", { class: "ok-box", "data-testid": "validation", "data-ok": "true" }, `校验通过${against}`)
      : h("div", { class: "error-box", "data-testid": "validation", "data-ok": "false" },
        h("strong", {}, `校验未通过${against}${cr.status === "open" ? "，不能批准" : ""}：`),
        v.stale ? h("div", {}, "所修改的条目在此期间已被他人修改，请基于当前版本重新提交。") : null,
        h("ul", { "data-testid": "validation-problems" }, listOf(v.problems || []).map((p) => h("li", {}, problemText(p))))),
    warnings.length
      ? h("div", { class: "warn-box", "data-testid": "validation-warnings" }, h("strong", {}, "提醒（不影响批准）："),
        h("ul", {}, warnings.map((w) => h("li", {}, problemText(w)))))
      : null];

  const actions = h("section", { class: "panel", "aria-labelledby": "act-h", "data-testid": "cr-actions" }, h("h2", { id: "act-h" }, "操作"));
  let anyAction = false;
  const act = async (label, fn) => {
    clear(out);
    try {
      await fn();
      flash(label);
      render();
    } catch (e) {
      out.append(problemBox(e, "action-error"));
    }
  };
  if (cr.status === "open" && hasRole("reviewer")) {
    anyAction = true;
    const comment = h("textarea", { id: "review-comment", rows: 3, "data-testid": "review-comment", placeholder: "审核意见（驳回时请说明原因）" });
    const selfReview = isAuthor;
    const invalid = v && v.ok === false;
    const approve = h("button", { type: "button", class: "btn good", id: "btn-approve", "data-testid": "btn-approve", disabled: selfReview || invalid || null },
      "批准");
    const reject = h("button", { type: "button", class: "btn danger", id: "btn-reject", "data-testid": "btn-reject", disabled: selfReview || null }, "驳回");
    const review = (decision) => act(decision === "approve" ? `已批准变更申请 #${cr.id}` : `已驳回变更申请 #${cr.id}`, () => {
      if (decision === "reject" && !comment.value.trim()) {
        comment.focus();
        throw new ApiError(0, { title: "请填写驳回理由" });
      }
      return api("POST", `${API}/change-requests/${enc(crId)}/review`, { body: { decision, comment: comment.value.trim() } });
    });
    approve.addEventListener("click", () => review("approve"));
    reject.addEventListener("click", () => review("reject"));
    append(actions, [h("h3", {}, "审核"),
      selfReview ? h("div", { class: "warn-box", "data-testid": "self-review-note" }, "这是您自己提交的变更申请，不能由您本人审核，需由其他审核人批准或驳回。") : null,
      invalid && !selfReview ? h("div", { class: "warn-box", "data-testid": "invalid-note" }, "校验未通过的变更申请不能批准。") : null,
      h("label", { for: "review-comment" }, "审核意见"), comment,
      h("div", { class: "actions" }, approve, reject)]);
  } else if (cr.status === "open" && isAuthor) {
    actions.append(h("div", { class: "muted", "data-testid": "self-review-note" }, "等待其他审核人审核（您不能审核自己提交的申请）。"));
  }
  const withdrawable = ["open", "approved", "rejected", "conflict"].includes(cr.status);
  if (withdrawable && (isAuthor || hasRole("admin"))) {
    anyAction = true;
    actions.append(h("div", { class: "actions" },
      ["open", "conflict"].includes(cr.status)
        ? h("button", { type: "button", class: "btn", "data-testid": "btn-validate", onclick: () => act("已重新校验", () => api("POST", `${API}/change-requests/${enc(crId)}/validate`)) }, "重新校验")
        : null,
      h("button", { type: "button", class: "btn", "data-testid": "btn-withdraw", onclick: (ev) => {
        const box = h("div", { class: "confirm-box", role: "alertdialog", "aria-label": "确认撤回" },
          h("p", {}, `确定撤回变更申请 #${cr.id}？撤回后不能再审核。`),
          h("div", { class: "actions" },
            h("button", { type: "button", class: "btn danger", "data-testid": "btn-withdraw-confirm", onclick: () => act(`已撤回变更申请 #${cr.id}`, () => api("POST", `${API}/change-requests/${enc(crId)}/withdraw`)) }, "确认撤回"),
            h("button", { type: "button", class: "btn", onclick: () => box.remove() }, "取消")));
        ev.target.closest(".actions").after(box);
      } }, "撤回")));
  } else if (hasRole("reviewer", "curator") && cr.status === "open") {
    actions.append(h("div", { class: "actions" },
      h("button", { type: "button", class: "btn", "data-testid": "btn-validate", onclick: () => act("已重新校验", () => api("POST", `${API}/change-requests/${enc(crId)}/validate`)) }, "重新校验")));
    anyAction = true;
  }
  if (cr.status === "approved") {
    actions.append(h("p", {}, "已批准，等待发布。", hasRole("reviewer") ? h("a", { href: "#/releases", "data-testid": "goto-release" }, "前往发布") : null));
    anyAction = true;
  }

  // the author may rewrite an open change request (advanced: edits as JSON)
  let editor = null;
  if (["open", "rejected", "conflict"].includes(cr.status) && (isAuthor || hasRole("admin"))) {
    const ta = h("textarea", { class: "code", id: "cr-json", "data-testid": "cr-json", rows: 14, spellcheck: "false" });
    ta.value = JSON.stringify({ title: cr.title, reason: cr.reason, source: cr.source, edits: cr.edits }, null, 2);
    const msg = h("div", {});
    editor = h("details", { class: "panel", "data-testid": "cr-editor" }, h("summary", {}, cr.status === "open" ? "修改此申请（高级：JSON）" : "修改后重新提交（高级：JSON）"),
      cr.status !== "open" ? h("p", { class: "small muted" }, "保存后申请重新变为“待审核”。若条目已被他人修改，请先在编辑页查看当前版本，并更新 base_etag。") : null,
      h("label", { for: "cr-json" }, "标题、理由、出处和编辑内容"), ta,
      h("div", { class: "actions" }, h("button", { type: "button", class: "btn", "data-testid": "btn-save-cr", onclick: async () => {
        clear(msg);
        let body;
        try {
          body = JSON.parse(ta.value);
        } catch (e) {
          msg.append(h("div", { class: "error-box" }, `不是有效的 JSON：${e.message}`));
          return;
        }
        try {
          await api("PUT", `${API}/change-requests/${enc(crId)}`, { body, headers: revision ? { "If-Match": `"${revision}"` } : {} });
          flash(`已保存变更申请 #${cr.id}`);
          render();
        } catch (e) {
          msg.append(e.status === 412 ? h("div", { class: "warn-box", role: "alert" }, "该申请已在别处被修改，您的文本仍在上方。请复制保存后刷新页面再修改。") : problemBox(e));
        }
      } }, "保存修改")), msg);
  }

  replaceLoading(root,
    h("div", { class: "row" }, h("h1", { "data-testid": "cr-title" }, `#${cr.id} ${cr.title || ""}`), badgeStatus(cr.status)),
    h("section", { class: "panel" },
      h("div", { class: "kv" },
        h("span", {}, "提交人"), h("span", { "data-testid": "cr-author" }, cr.author || "—"),
        h("span", {}, "创建时间"), h("span", {}, fmtTime(cr.created_at)),
        h("span", {}, "更新时间"), h("span", {}, fmtTime(cr.updated_at)),
        h("span", {}, "基于版本"), h("span", { class: "mono" }, cr.base_release || "—"),
        h("span", {}, "修订号"), h("span", { class: "mono" }, cr.revision ?? "—"),
        h("span", {}, "出处"), h("span", { "data-testid": "cr-source" }, cr.source ? [cr.source.work, cr.source.edition, cr.source.locator].filter(Boolean).join(" · ") : "—"),
        cr.released_in ? [h("span", {}, "发布于"), h("a", { href: `#/release/${enc(cr.released_in)}` }, cr.released_in)] : null),
      h("h3", {}, "理由"), h("p", { "data-testid": "cr-reason" }, cr.reason || "—")),
    h("section", { class: "panel", "aria-labelledby": "val-h" }, h("h2", { id: "val-h" }, "校验结果"), validationBox),
    cr.review
      ? h("section", { class: "panel", "data-testid": "cr-review" }, h("h2", {}, "审核"),
        h("p", {}, `${cr.review.reviewer || "—"} ${DECISION_LABEL[cr.review.decision] || cr.review.decision || ""}（${fmtTime(cr.review.at)}）`),
        cr.review.comment ? h("blockquote", {}, cr.review.comment) : null)
      : null,
    anyAction || actions.children.length > 1 ? actions : null,
    out,
    h("section", { class: "panel", "aria-labelledby": "diff-h" }, h("h2", { id: "diff-h" }, "逐项差异"), diffTables(cr.diff)),
    h("section", { class: "panel", "aria-labelledby": "edits-h" }, h("h2", { id: "edits-h" }, `编辑内容（${listOf(cr.edits || []).length} 项）`),
      h("ul", { class: "edits", "data-testid": "cr-edits" }, listOf(cr.edits || []).map(editSummary))),
    listOf(cr.events || []).length
      ? h("section", { class: "panel", "aria-labelledby": "events-h" }, h("h2", { id: "events-h" }, "处理记录"),
        h("table", { class: "events", "data-testid": "cr-events" },
          h("thead", {}, h("tr", {}, h("th", {}, "时间"), h("th", {}, "操作人"), h("th", {}, "操作"), h("th", {}, "说明"))),
          h("tbody", {}, listOf(cr.events).map((e) => h("tr", {},
            h("td", { class: "small" }, fmtTime(e.at)), h("td", {}, e.actor || "—"),
            h("td", {}, EVENT_LABEL[e.action] || STATUS_LABEL[e.action] || e.action), h("td", { class: "small" }, e.detail || ""))))))
      : null,
    editor);
}

// ---- view: releases ------------------------------------------------------------------------------------
function exportLink(name, format) {
  const url = `${API}/releases/${enc(name)}/export?format=${format}`;
  return h("a", {
    href: url, class: "btn small", "data-testid": `export-${format}`,
    onclick: async (ev) => {
      ev.preventDefault();
      const a = ev.currentTarget;
      if (a.getAttribute("aria-busy") === "true") return;
      const label = a.textContent;
      a.setAttribute("aria-busy", "true");
      a.setAttribute("aria-disabled", "true");
      a.textContent = "正在导出…";
      try {
        const res = await api("GET", url, { raw: true });
        downloadBlob(await res.blob(), `tcm-kb-${name}.${format === "jsonld" ? "jsonld" : "ttl"}`);
      } catch (e) {
        flash(`导出失败：${e.message}`, "err");
      } finally {
        a.removeAttribute("aria-busy");
        a.removeAttribute("aria-disabled");
        a.textContent = label;
      }
    },
    title: "下载该版本的 RDF（含 PROV-O 变更溯源），整个知识图谱，可能需要一些时间",
  }, format === "ttl" ? "导出 Turtle" : "导出 JSON-LD");
}

async function releaseDetail(name) {
  const { data: rel } = await api("GET", `${API}/releases/${enc(name)}`);
  return h("div", { class: "release-detail", "data-testid": "release-detail", "data-name": name },
    h("div", { class: "kv small" },
      h("span", {}, "版本号"), h("span", { class: "mono" }, rel.version || "—"),
      h("span", {}, "内容哈希"), h("span", { class: "mono" }, rel.content_hash || "—"),
      h("span", {}, "上一版本"), h("span", { class: "mono" }, rel.parent || "—"),
      rel.restored_from ? [h("span", {}, "恢复自"), h("span", { class: "mono" }, rel.restored_from)] : null,
      rel.note ? [h("span", {}, "说明"), h("span", {}, rel.note)] : null),
    h("h3", {}, "变更记录"),
    listOf(rel.changelog || []).length
      ? h("ul", { class: "changelog", "data-testid": "changelog" }, listOf(rel.changelog).map((c) => h("li", {}, typeof c === "string" ? c : problemText(c))))
      : h("p", { class: "muted" }, "无"),
    h("h3", {}, `与上一版本的差异`),
    diffTables(rel.diff, "release-diff"));
}

async function viewReleases(root) {
  const [{ data: relData }, approvedRes] = await Promise.all([
    api("GET", `${API}/releases`),
    api("GET", `${API}/change-requests?status=approved`).catch(() => ({ data: [] })),
  ]);
  const releases = listOf(relData, "releases");
  const approved = listOf(approvedRes.data, "change_requests");
  const current = releases.find((r) => r.current);
  if (current && current.version) $("#kbversion").textContent = `知识库版本 ${current.version}`;
  const out = h("div", { "data-testid": "release-result", "aria-live": "polite" });
  const canRelease = hasRole("reviewer");
  const note = h("input", { type: "text", id: "release-note", class: "wide", "data-testid": "release-note", placeholder: "发布说明（可选）" });
  const relBtn = h("button", { type: "button", class: "btn primary", id: "btn-release", "data-testid": "btn-release", disabled: !canRelease || !approved.length || null }, `发布已批准的变更（${approved.length}）`);
  relBtn.addEventListener("click", async () => {
    clear(out);
    relBtn.disabled = true;
    try {
      const body = note.value.trim() ? { note: note.value.trim() } : {};
      const { data: rel } = await api("POST", `${API}/releases`, { body });
      flash(`已发布新版本 ${rel.name}${rel.version ? `（${rel.version}）` : ""}`);
      render();
    } catch (e) {
      relBtn.disabled = false;
      out.append(problemBox(e, "release-error"));
    }
  });

  const rows = releases.map((r) => {
    const detailRow = h("tr", { hidden: true }, h("td", { colspan: 7 }));
    const toggle = h("button", { type: "button", class: "btn small", "aria-expanded": "false", "data-testid": "btn-release-detail", onclick: async () => {
      const open = toggle.getAttribute("aria-expanded") === "true";
      toggle.setAttribute("aria-expanded", String(!open));
      detailRow.hidden = open;
      if (!open && !detailRow.dataset.loaded) {
        const cell = clear(detailRow.firstChild);
        cell.append(h("p", { class: "muted" }, "正在加载…"));
        try {
          const d = await releaseDetail(r.name);
          clear(cell).append(d);
          detailRow.dataset.loaded = "1";
        } catch (e) {
          clear(cell).append(problemBox(e));
        }
      }
    } }, "变更与差异");
    const restoreCell = h("div", { class: "actions" }, toggle, exportLink(r.name, "ttl"), exportLink(r.name, "jsonld"));
    if (canRelease && !r.current) {
      const restore = h("button", { type: "button", class: "btn small", "data-testid": "btn-restore", onclick: () => {
        if (restoreCell.querySelector(".confirm-box")) return;
        const box = h("div", { class: "confirm-box", role: "alertdialog", "aria-label": "确认恢复", "data-testid": "restore-confirm" },
          h("p", {}, `确定要恢复到版本 ${r.name} 吗？这会把该版本的内容发布为一个新版本，正在运行的系统会立即使用它；历史不会被删除。`),
          h("div", { class: "actions" },
            h("button", { type: "button", class: "btn danger", "data-testid": "btn-restore-confirm", onclick: async () => {
              try {
                const { data: rel } = await api("POST", `${API}/releases/${enc(r.name)}/restore`, { body: {} });
                flash(`已恢复：新版本 ${rel.name} 的内容与 ${r.name} 相同`);
                render();
              } catch (e) {
                box.append(problemBox(e, "restore-error"));
              }
            } }, "确认恢复"),
            h("button", { type: "button", class: "btn", onclick: () => box.remove() }, "取消")));
        restoreCell.append(box);
      } }, "恢复");
      restoreCell.insertBefore(restore, toggle);
    }
    return [h("tr", { "data-testid": "release-row", "data-name": r.name, "data-current": r.current ? "true" : "false" },
      h("td", {}, h("a", { href: `#/release/${enc(r.name)}`, class: "mono" }, r.name), r.current ? [" ", h("span", { class: "badge current", "data-testid": "release-current" }, "当前")] : null),
      h("td", { class: "nowrap" }, RELEASE_KIND_LABEL[r.kind] || r.kind || "—", r.restored_from ? h("div", { class: "small muted" }, `自 ${r.restored_from}`) : null),
      h("td", { class: "small nowrap" }, fmtTime(r.created_at)),
      h("td", {}, r.created_by || "—"),
      h("td", {}, listOf(r.change_requests || []).map((id, i) => [i ? " " : "", h("a", { href: `#/cr/${id}` }, `#${id}`)])),
      h("td", { class: "small" }, r.note || ""),
      h("td", {}, restoreCell)), detailRow];
  });

  replaceLoading(root,
    h("h1", {}, "发布"),
    h("section", { class: "panel", "aria-labelledby": "pub-h", "data-testid": "release-panel" },
      h("h2", { id: "pub-h" }, "发布新版本"),
      approved.length
        ? h("ul", { "data-testid": "approved-list" }, approved.map((cr) => h("li", {}, h("a", { href: `#/cr/${cr.id}` }, `#${cr.id} ${cr.title || ""}`), ` （${cr.author || ""}）`)))
        : h("p", { class: "muted", "data-testid": "approved-empty" }, "目前没有已批准、待发布的变更申请。"),
      canRelease ? null : h("p", { class: "muted" }, "只有审核人可以发布。"),
      h("div", { class: "form-grid" }, h("label", { for: "release-note" }, "发布说明"), note),
      h("div", { class: "actions" }, relBtn),
      out),
    h("section", { class: "panel", "aria-labelledby": "hist-h" },
      h("h2", { id: "hist-h" }, "发布历史"),
      releases.length
        ? h("table", { "data-testid": "release-table" },
          h("thead", {}, h("tr", {}, h("th", {}, "版本"), h("th", {}, "类型"), h("th", {}, "时间"), h("th", {}, "发布人"), h("th", {}, "变更申请"), h("th", {}, "说明"), h("th", {}, "操作"))),
          h("tbody", {}, rows))
        : h("p", { class: "muted" }, "还没有发布记录。")));
}

async function viewRelease(root, _params, name) {
  const detail = await releaseDetail(name);
  replaceLoading(root, h("p", {}, h("a", { href: "#/releases" }, "← 发布历史")),
    h("div", { class: "row" }, h("h1", {}, `版本 ${name}`), h("span", { class: "spacer" }), exportLink(name, "ttl"), exportLink(name, "jsonld")),
    h("section", { class: "panel" }, detail));
}

// ---- start ---------------------------------------------------------------------------------------------
$("#btn-logout").addEventListener("click", () => {
  if (!confirmLeave()) return;
  logout(null, false);
  flash("已退出登录。");
});
let shownHash = location.hash;
let revertingHash = false;
window.addEventListener("hashchange", () => {
  if (revertingHash) {
    revertingHash = false;
    return;
  }
  if (!confirmLeave()) {
    revertingHash = true;
    location.hash = shownHash;
    return;
  }
  shownHash = location.hash;
  // a message survives the navigation that follows it (submit -> change request page), then goes
  if (flashNavs > 0) flashNavs -= 1;
  else clearFlash();
  render();
});
window.addEventListener("beforeunload", (ev) => {
  if (leaveGuard && leaveGuard()) {
    ev.preventDefault();
    ev.returnValue = "";
  }
});
renderUserBox();
render();
