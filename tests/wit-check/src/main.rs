//! `wit-check`: the contract checks behind `tests/sandbox.rs`.
//!
//! ```text
//! wit-check world COMPONENT WIT_DIR WORLD   the component's imports and exports are the world's
//! wit-check docs WIT_DIR                    every item of the main package has a doc comment
//! wit-check print COMPONENT                 the component's world as WIT (`wasm-tools component wit`)
//! ```
//!
//! Both sides are read with the crates `wasm-tools` itself is built on:
//! `wit-parser` for the documented WIT, `wit-component` to decode what the
//! built component actually imports and exports. Each item is rendered
//! structurally (names, fields, cases, parameter and result types, with
//! aliases followed), so a difference in any signature shows.
//!
//! What "match" means, item by item:
//! - the set of imported and of exported interfaces is exactly the world's
//!   (the world's imports include the interfaces its imports `use`, as
//!   wit-parser elaborates them);
//! - an interface of the world's own package (the contract) has exactly the
//!   documented types and functions, nothing more, nothing less;
//! - an interface of a dependency (the vendored WASI) may be imported in
//!   part, since a component imports only the functions it calls, but every
//!   type and function it imports is the documented one.
//!
//! Exit code 0 when everything matches, 1 with one line per difference.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use wit_parser::{
    Function, FunctionKind, Handle, InterfaceId, PackageId, Resolve, Type, TypeDefKind, TypeId, TypeOwner, WorldId,
    WorldItem,
};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let run = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["world", component, wit, world] => world_check(Path::new(component), Path::new(wit), world),
        ["docs", wit] => docs_check(Path::new(wit)),
        ["print", component] => print(Path::new(component)).map(|()| Vec::new()),
        _ => {
            eprintln!("usage: wit-check world COMPONENT WIT_DIR WORLD | docs WIT_DIR | print COMPONENT");
            return ExitCode::from(2);
        }
    };
    match run {
        Ok(problems) if problems.is_empty() => ExitCode::SUCCESS,
        Ok(problems) => {
            for p in problems {
                println!("MISMATCH: {p}");
            }
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("wit-check: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// The documented package in `wit` (with `wit/deps`).
fn documented(wit: &Path) -> Result<(Resolve, PackageId)> {
    let mut resolve = Resolve::default();
    let (pkg, _) = resolve.push_dir(wit).with_context(|| format!("parsing {}", wit.display()))?;
    Ok((resolve, pkg))
}

/// The world a built component implements, decoded from its binary.
fn decoded(component: &Path) -> Result<(Resolve, WorldId)> {
    let bytes = std::fs::read(component).with_context(|| format!("reading {}", component.display()))?;
    match wit_component::decode(&bytes).with_context(|| format!("decoding {}", component.display()))? {
        wit_component::DecodedWasm::Component(resolve, world) => Ok((resolve, world)),
        wit_component::DecodedWasm::WitPackage(..) => bail!("{} is a WIT package, not a component", component.display()),
    }
}

fn print(component: &Path) -> Result<()> {
    let (resolve, world) = decoded(component)?;
    let main = resolve.worlds[world].package.context("the decoded world has no package")?;
    let nested: Vec<PackageId> = resolve.packages.iter().map(|(id, _)| id).filter(|id| *id != main).collect();
    let mut printer = wit_component::WitPrinter::default();
    printer.emit_docs(false);
    printer.print(&resolve, main, &nested)?;
    println!("{}", printer.output);
    Ok(())
}

/// One interface, rendered: type definitions and function signatures by name.
#[derive(Default, PartialEq, Eq)]
struct Rendered {
    types: BTreeMap<String, String>,
    functions: BTreeMap<String, String>,
}

/// A world item, rendered.
#[derive(PartialEq, Eq)]
enum Item {
    Interface(String, Rendered),
    Function(String),
    Type(String),
}

/// Renders the items of one `Resolve` so that two of them can be compared.
struct View<'a>(&'a Resolve);

impl View<'_> {
    fn interface_name(&self, id: InterfaceId) -> String {
        self.0.id_of(id).unwrap_or_else(|| format!("<an interface without a name: {:?}>", self.0.interfaces[id].name))
    }

    /// A reference to a type: a named type by its owner and name (aliases
    /// followed to what they name), any other by its structure.
    fn ty(&self, ty: &Type) -> String {
        let mut ty = *ty;
        while let Type::Id(id) = ty {
            match &self.0.types[id].kind {
                TypeDefKind::Type(next) => ty = *next,
                _ => break,
            }
        }
        match ty {
            Type::Bool => "bool".into(),
            Type::U8 => "u8".into(),
            Type::U16 => "u16".into(),
            Type::U32 => "u32".into(),
            Type::U64 => "u64".into(),
            Type::S8 => "s8".into(),
            Type::S16 => "s16".into(),
            Type::S32 => "s32".into(),
            Type::S64 => "s64".into(),
            Type::F32 => "f32".into(),
            Type::F64 => "f64".into(),
            Type::Char => "char".into(),
            Type::String => "string".into(),
            Type::ErrorContext => "error-context".into(),
            Type::Id(id) => self.named_or_structure(id),
        }
    }

    fn named_or_structure(&self, id: TypeId) -> String {
        let def = &self.0.types[id];
        match (&def.name, def.owner) {
            (Some(name), TypeOwner::Interface(owner)) => format!("{}#{name}", self.interface_name(owner)),
            (Some(name), TypeOwner::World(_)) => format!("world#{name}"),
            _ => self.structure(&def.kind),
        }
    }

    fn opt(&self, ty: &Option<Type>) -> String {
        ty.as_ref().map_or_else(|| "_".to_string(), |t| self.ty(t))
    }

    /// What a type is.
    fn structure(&self, kind: &TypeDefKind) -> String {
        let list = |items: Vec<String>| items.join(", ");
        match kind {
            TypeDefKind::Record(r) => {
                format!("record {{ {} }}", list(r.fields.iter().map(|f| format!("{}: {}", f.name, self.ty(&f.ty))).collect()))
            }
            TypeDefKind::Resource => "resource".into(),
            TypeDefKind::Handle(Handle::Own(id)) => format!("own<{}>", self.named_or_structure(*id)),
            TypeDefKind::Handle(Handle::Borrow(id)) => format!("borrow<{}>", self.named_or_structure(*id)),
            TypeDefKind::Flags(f) => format!("flags {{ {} }}", list(f.flags.iter().map(|f| f.name.clone()).collect())),
            TypeDefKind::Tuple(t) => format!("tuple<{}>", list(t.types.iter().map(|t| self.ty(t)).collect())),
            TypeDefKind::Variant(v) => format!(
                "variant {{ {} }}",
                list(v.cases.iter().map(|c| match &c.ty {
                    Some(t) => format!("{}({})", c.name, self.ty(t)),
                    None => c.name.clone(),
                }).collect())
            ),
            TypeDefKind::Enum(e) => format!("enum {{ {} }}", list(e.cases.iter().map(|c| c.name.clone()).collect())),
            TypeDefKind::Option(t) => format!("option<{}>", self.ty(t)),
            TypeDefKind::Result(r) => format!("result<{}, {}>", self.opt(&r.ok), self.opt(&r.err)),
            TypeDefKind::List(t) => format!("list<{}>", self.ty(t)),
            TypeDefKind::Map(k, v) => format!("map<{}, {}>", self.ty(k), self.ty(v)),
            TypeDefKind::FixedLengthList(t, n) => format!("list<{}, {n}>", self.ty(t)),
            TypeDefKind::Future(t) => format!("future<{}>", self.opt(t)),
            TypeDefKind::Stream(t) => format!("stream<{}>", self.opt(t)),
            TypeDefKind::Type(t) => format!("= {}", self.ty(t)),
            TypeDefKind::Unknown => "<unknown>".into(),
        }
    }

    fn function(&self, f: &Function) -> String {
        let kind = match f.kind {
            FunctionKind::Freestanding => "func".to_string(),
            FunctionKind::AsyncFreestanding => "async func".to_string(),
            FunctionKind::Method(id) => format!("method of {}", self.named_or_structure(id)),
            FunctionKind::AsyncMethod(id) => format!("async method of {}", self.named_or_structure(id)),
            FunctionKind::Static(id) => format!("static func of {}", self.named_or_structure(id)),
            FunctionKind::AsyncStatic(id) => format!("async static func of {}", self.named_or_structure(id)),
            FunctionKind::Constructor(id) => format!("constructor of {}", self.named_or_structure(id)),
        };
        let params: Vec<String> = f.params.iter().map(|p| format!("{}: {}", p.name, self.ty(&p.ty))).collect();
        match &f.result {
            Some(r) => format!("{kind}({}) -> {}", params.join(", "), self.ty(r)),
            None => format!("{kind}({})", params.join(", ")),
        }
    }

    fn interface(&self, id: InterfaceId) -> Rendered {
        let iface = &self.0.interfaces[id];
        Rendered {
            types: iface.types.iter().map(|(name, t)| (name.clone(), self.structure(&self.0.types[*t].kind))).collect(),
            functions: iface.functions.iter().map(|(name, f)| (name.clone(), self.function(f))).collect(),
        }
    }

    fn item(&self, item: &WorldItem) -> Item {
        match item {
            WorldItem::Interface { id, .. } => Item::Interface(self.interface_name(*id), self.interface(*id)),
            WorldItem::Function(f) => Item::Function(self.function(f)),
            WorldItem::Type { id, .. } => Item::Type(self.structure(&self.0.types[*id].kind)),
        }
    }

    /// A world's imports and exports, by name.
    fn world(&self, world: WorldId) -> [BTreeMap<String, Item>; 2] {
        let w = &self.0.worlds[world];
        [&w.imports, &w.exports]
            .map(|items| items.iter().map(|(key, item)| (self.0.name_world_key(key), self.item(item))).collect())
    }
}

fn world_check(component: &Path, wit: &Path, world: &str) -> Result<Vec<String>> {
    let (doc, pkg) = documented(wit)?;
    let doc_world = doc.select_world(&[pkg], Some(world))?;
    let own = format!("{}:{}/", doc.packages[pkg].name.namespace, doc.packages[pkg].name.name);
    let (built, built_world) = decoded(component)?;
    let documented = View(&doc).world(doc_world);
    let actual = View(&built).world(built_world);
    let mut problems = Vec::new();
    for ((documented, actual), direction) in documented.iter().zip(&actual).zip(["import", "export"]) {
        for name in documented.keys().filter(|k| !actual.contains_key(*k)) {
            problems.push(format!("the world documents {direction} {name}, which the component does not {direction}"));
        }
        for name in actual.keys().filter(|k| !documented.contains_key(*k)) {
            problems.push(format!("the component {direction}s {name}, which the world does not document"));
        }
        for (name, doc_item) in documented {
            let Some(item) = actual.get(name) else { continue };
            let what = format!("{direction} {name}");
            match (doc_item, item) {
                (Item::Interface(doc_id, doc_iface), Item::Interface(id, iface)) => {
                    if doc_id != id {
                        problems.push(format!("{what}: the component's is {id}, the world's {doc_id}"));
                    }
                    let exact = doc_id.starts_with(&own);
                    let before = problems.len();
                    compare(&mut problems, &what, "type", &doc_iface.types, &iface.types, exact);
                    compare(&mut problems, &what, "function", &doc_iface.functions, &iface.functions, exact);
                    if problems.len() == before {
                        let (t, f) = (iface.types.len(), iface.functions.len());
                        let (dt, df) = (doc_iface.types.len(), doc_iface.functions.len());
                        if exact {
                            println!("{what}: {}, {}, exactly as documented", count(f, "function"), count(t, "type"));
                        } else {
                            println!(
                                "{what}: {f} of {}, {t} of {} used, each as documented",
                                count(df, "function"),
                                count(dt, "type")
                            );
                        }
                    }
                }
                (doc_item, item) if doc_item == item => println!("{what}: as documented"),
                _ => problems.push(format!("{what}: not what the world documents")),
            }
        }
    }
    Ok(problems)
}

fn count(n: usize, what: &str) -> String {
    if n == 1 { format!("1 {what}") } else { format!("{n} {what}s") }
}

/// Compares one kind of item of an interface; with `exact`, the component
/// must have every documented item too.
fn compare(
    problems: &mut Vec<String>,
    what: &str,
    kind: &str,
    documented: &BTreeMap<String, String>,
    actual: &BTreeMap<String, String>,
    exact: bool,
) {
    for (name, shape) in actual {
        match documented.get(name) {
            None => problems.push(format!("{what}: the component has {kind} {name} ({shape}), which the world does not document")),
            Some(doc) if doc != shape => {
                problems.push(format!("{what}: {kind} {name} is `{shape}` in the component but `{doc}` in the world"))
            }
            Some(_) => {}
        }
    }
    if exact {
        for (name, doc) in documented.iter().filter(|(n, _)| !actual.contains_key(*n)) {
            problems.push(format!("{what}: the world documents {kind} {name} ({doc}), which the component lacks"));
        }
    }
}

/// Every interface, world, type, field, case and function of the main
/// package in `wit` has a doc comment.
fn docs_check(wit: &Path) -> Result<Vec<String>> {
    let (r, pkg) = documented(wit)?;
    let package = &r.packages[pkg];
    let mut missing = Vec::new();
    let mut checked = 0usize;
    let mut need = |docs: &wit_parser::Docs, what: String| {
        checked += 1;
        if docs.contents.as_deref().is_none_or(|d| d.trim().is_empty()) {
            missing.push(format!("{what} has no doc comment"));
        }
    };
    for (name, id) in &package.worlds {
        let w = &r.worlds[*id];
        need(&w.docs, format!("world {name}"));
        // wit-parser adds the interfaces that the world's interfaces `use`
        // to its imports, without a comment: those need none.
        let used: Vec<InterfaceId> = w
            .imports
            .values()
            .chain(w.exports.values())
            .filter_map(|item| match item {
                WorldItem::Interface { id, .. } => Some(*id),
                _ => None,
            })
            .flat_map(|id| r.interface_direct_deps(id))
            .collect();
        for (key, item) in w.imports.iter().chain(&w.exports) {
            match item {
                WorldItem::Interface { id, .. } if used.contains(id) => {}
                WorldItem::Interface { docs, .. } => need(docs, format!("world {name}: {}", r.name_world_key(key))),
                WorldItem::Function(f) => need(&f.docs, format!("world {name}: function {}", r.name_world_key(key))),
                WorldItem::Type { id, .. } => need(&r.types[*id].docs, format!("world {name}: type {}", r.name_world_key(key))),
            }
        }
    }
    for (name, id) in &package.interfaces {
        let iface = &r.interfaces[*id];
        need(&iface.docs, format!("interface {name}"));
        for (tname, t) in &iface.types {
            let def = &r.types[*t];
            need(&def.docs, format!("{name}: type {tname}"));
            match &def.kind {
                TypeDefKind::Record(rec) => {
                    rec.fields.iter().for_each(|f| need(&f.docs, format!("{name}: field {tname}.{}", f.name)))
                }
                TypeDefKind::Variant(v) => {
                    v.cases.iter().for_each(|c| need(&c.docs, format!("{name}: case {tname}.{}", c.name)))
                }
                TypeDefKind::Enum(e) => {
                    e.cases.iter().for_each(|c| need(&c.docs, format!("{name}: case {tname}.{}", c.name)))
                }
                TypeDefKind::Flags(f) => {
                    f.flags.iter().for_each(|c| need(&c.docs, format!("{name}: flag {tname}.{}", c.name)))
                }
                _ => {}
            }
        }
        for (fname, f) in &iface.functions {
            need(&f.docs, format!("{name}: function {fname}"));
        }
    }
    println!("{checked} items of {} checked for doc comments", package.name);
    Ok(missing)
}
