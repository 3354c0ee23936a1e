"""The Azure deployment (``azure.yaml``, ``infra/``), checked without Azure or the Bicep CLI.

Every ``.bicep`` file is parsed with pycep, and a walker goes through what the
parser gives: the resources the sample needs exist, names and references line up
(module files, parameters, outputs, parents, scopes), no parameter or output is a
secret and nothing reads one (``list*()``), Redis takes Entra tokens only, the web
app is https-only with TLS 1.2, FTP off and a health check, and the app settings
are the ones the sample reads. Each check runs against a copy of ``infra/`` with
one thing broken, to show that it fails when it should.

What a parser cannot see (resource schemas, the Graph extension's types, what
Azure accepts at deployment) is left to ``azd provision``, which compiles first.
"""

from __future__ import annotations

import functools
import json
import re
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pycep import BicepParser

ROOT = Path(__file__).resolve().parent.parent
INFRA = ROOT / "infra"
SAMPLE = ROOT / "sample"
sys.path.insert(0, str(SAMPLE))

from webapp import health  # noqa: E402
from webapp import settings as sample_settings  # noqa: E402

Template = dict[str, Any]

#: Every resource type the sample's deployment needs, and why.
NEEDED_TYPES = {
    "Microsoft.Resources/resourceGroups": "the resource group",
    "Microsoft.ManagedIdentity/userAssignedIdentities": "the web app's managed identity",
    "Microsoft.Web/serverfarms": "the App Service plan",
    "Microsoft.Web/sites": "the web app",
    "Microsoft.Web/sites/config": "the app settings",
    "Microsoft.Web/sites/basicPublishingCredentialsPolicies": "no FTP or SCM password",
    "Microsoft.Cache/redis": "the session store",
    "Microsoft.Cache/redis/accessPolicyAssignments": "the identity's access to Redis",
    "Microsoft.KeyVault/vaults": "the vault",
    "Microsoft.KeyVault/vaults/keys": "the key SECRET_KEY is derived from",
    "Microsoft.Authorization/roleAssignments": "the identity's right to sign with the key",
    "Microsoft.Graph/applications": "the app registration",
    "Microsoft.Graph/applications/federatedIdentityCredentials": "the registration's trust in the identity",
    "Microsoft.Graph/servicePrincipals": "the registration's service principal",
}
#: App settings the web app must get.
NEEDED_SETTINGS = {
    "IDENTITY_CLIENT_ID",
    "IDENTITY_AUTHORITY",
    "IDENTITY_MANAGED_IDENTITY",
    "IDENTITY_REDIRECT_URI",
    "REDIS_URL",
    "REDIS_ENTRA_AUTH",
    "AZURE_CLIENT_ID",
    "SECRET_KEY_VAULT_KEY",
    "TRUSTED_HOSTS",
    "BEHIND_PROXY",
    "GUNICORN_WORKERS",
}
#: Settings that would put a secret in the app's configuration.
SECRET_SETTINGS = {"SECRET_KEY", "IDENTITY_CLIENT_CREDENTIAL", "DAEMON_CLIENT_CREDENTIAL"}
#: Read by App Service's build, not by the app.
PLATFORM_SETTINGS = {"SCM_DO_BUILD_DURING_DEPLOYMENT"}
#: A name that says it holds a secret: it mentions one, or ends in key, token, ...
SECRET_NAME = re.compile(
    r"(secret|password|passwd|connectionstring|credential|accesskey|primarykey|sas)"
    r"|(key|keys|token|tokens|pwd)$"
)
#: Functions that read secrets out of resources (listKeys, listCredentials, ...).
LIST_CALL = re.compile(r"\blist[A-Z]\w*\s*\(|\.list\w*\s*\(")
BICEP_FUNCTIONS = {
    "environment",
    "tenant",
    "subscription",
    "resourceGroup",
    "uniqueString",
    "guid",
    "toLower",
    "string",
    "union",
    "subscriptionResourceId",
}


PARSER = BicepParser()


@functools.lru_cache(maxsize=256)
def parse_text(text: str) -> str:
    """The parse of ``text``, as JSON (parsing is slow; the broken copies share most files)."""
    return json.dumps(PARSER.parse(text=text))


def parse(path: Path) -> Template:
    template: Template = json.loads(parse_text(path.read_text()))
    return template


def kind_of(resource: Template) -> str:
    """A resource's type without its API version (pycep keeps it on nested resources)."""
    return str(resource["type"]).split("@")[0]


def templates(root: Path) -> dict[Path, Template]:
    """Every .bicep file under ``root``, parsed."""
    return {path: parse(path) for path in sorted(root.rglob("*.bicep"))}


def walk(value: Any) -> Iterator[Any]:
    """Every value nested in ``value`` (dicts, lists), ``value`` included."""
    yield value
    if isinstance(value, dict):
        for item in value.values():
            yield from walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from walk(item)


def accessor_path(value: Any) -> str | None:
    """``a.b.c`` for pycep's nested property accessors, else ``None``."""
    if not (isinstance(value, dict) and isinstance(value.get("operator"), dict)):
        return None
    operator = value["operator"]
    if operator.get("type") != "property_accessor":
        return None
    first, rest = operator["operands"]["operand_1"], operator["operands"]["operand_2"]
    head = first if isinstance(first, str) else "<expression>"
    tail = rest if isinstance(rest, str) else accessor_path(rest)
    return f"{head}.{tail}" if tail else head


def references(value: Any) -> Iterator[str]:
    """Dotted references in ``value``: property accessors and ``${...}`` interpolations."""
    path = accessor_path(value)
    if path:
        yield path
        first = value["operator"]["operands"]["operand_1"]
        if not isinstance(first, str):  # a function or an expression: look inside it
            yield from references(first)
    elif isinstance(value, dict):
        for item in value.values():
            yield from references(item)
    elif isinstance(value, list):
        for item in value:
            yield from references(item)
    elif isinstance(value, str):
        for expression in re.findall(r"\$\{([^}]*)\}", value):
            match = re.match(r"\s*([A-Za-z_]\w*(?:\.\w+)*)(\s*\()?", expression)
            if match and not match.group(2):
                yield match.group(1)


def symbols(template: Template) -> set[str]:
    names: set[str] = set()
    for section in ("parameters", "variables", "resources", "modules"):
        names.update(name.split("__")[-1] for name in template.get(section, {}))
    return names


def module_target(path: Path, module: Template) -> Path:
    return (path.parent / module["detail"]["path"]).resolve()


def resolved(template: Template, value: Any) -> Any:
    """A parameter's default or a variable's value when ``value`` names one, else ``value``."""
    if isinstance(value, str):
        if value in template.get("parameters", {}):
            return template["parameters"][value]["default"]
        if value in template.get("variables", {}):
            return template["variables"][value].get("value")
    return value


def resources_of(all_templates: dict[Path, Template], kind: str) -> list[tuple[Path, Template, Template]]:
    """(file, template, resource) for every declared (not ``existing``) resource of type ``kind``."""
    return [
        (path, template, resource)
        for path, template in all_templates.items()
        for resource in template.get("resources", {}).values()
        if kind_of(resource) == kind and not resource.get("existing")
    ]


def main_settings(root: Path) -> dict[str, Any]:
    """The app settings main.bicep hands the appsettings module."""
    main = parse(root / "main.bicep")
    for module in main.get("modules", {}).values():
        if module["detail"]["path"].endswith("appsettings.bicep"):
            settings: dict[str, Any] = module["config"]["params"]["settings"]
            return settings
    return {}


def param_passed(root: Path, module_file: str, param: str) -> Any:
    """What main.bicep passes ``param`` of the module in ``module_file``."""
    main = parse(root / "main.bicep")
    for module in main.get("modules", {}).values():
        if module["detail"]["path"].endswith(module_file):
            return module["config"].get("params", {}).get(param)
    return None


# --- The checks: each returns what is wrong, one line a problem ---------------------


def check_modules_line_up(root: Path) -> list[str]:
    problems = []
    for path, template in templates(root).items():
        for symbol, module in template.get("modules", {}).items():
            target = module_target(path, module)
            if not target.is_file():
                problems.append(f"{path.name}: module {symbol} points at a missing file {module['detail']['path']}")
                continue
            declared = parse(target)
            passed = module["config"].get("params", {})
            for name in passed:
                if name not in declared.get("parameters", {}):
                    problems.append(f"{path.name}: module {symbol} passes {name}, which {target.name} does not declare")
            for name, parameter in declared.get("parameters", {}).items():
                if parameter.get("default") is None and name not in passed:
                    problems.append(f"{path.name}: module {symbol} does not pass {target.name}'s required {name}")
        outputs = {
            symbol: set(parse(module_target(path, module)).get("outputs", {}))
            for symbol, module in template.get("modules", {}).items()
            if module_target(path, module).is_file()
        }
        for reference in references(template):
            parts = reference.split(".")
            if len(parts) >= 3 and parts[0] in outputs and parts[1] == "outputs" and parts[2] not in outputs[parts[0]]:
                problems.append(f"{path.name}: {reference} is not an output of module {parts[0]}")
    return problems


def check_references_resolve(root: Path) -> list[str]:
    problems = []
    for path, template in templates(root).items():
        known = symbols(template) | BICEP_FUNCTIONS
        for reference in references(template):
            head = reference.split(".")[0]
            if head not in known and head != "<expression>":
                problems.append(f"{path.name}: {reference} names nothing declared")
        for symbol, resource in template.get("resources", {}).items():
            config = resource["config"]
            for key in ("parent", "scope"):
                if isinstance(config.get(key), str) and config[key] not in known:
                    problems.append(f"{path.name}: {symbol}'s {key} {config[key]} is not declared")
            for dependency in config.get("dependsOn", []) or []:
                if isinstance(dependency, str) and dependency not in known:
                    problems.append(f"{path.name}: {symbol} depends on undeclared {dependency}")
        for symbol, module in template.get("modules", {}).items():
            scope = module["config"].get("scope")
            if isinstance(scope, str) and scope not in known:
                problems.append(f"{path.name}: module {symbol}'s scope {scope} is not declared")
    return problems


def check_no_secrets(root: Path) -> list[str]:
    problems = []
    for path, template in templates(root).items():
        for section in ("parameters", "outputs"):
            for name, item in template.get(section, {}).items():
                if SECRET_NAME.search(name.replace("_", "").lower()):
                    problems.append(f"{path.name}: {section[:-1]} {name} looks like a secret")
                if any(decorator.get("type") == "secure" for decorator in item.get("decorators", [])):
                    problems.append(f"{path.name}: {section[:-1]} {name} is @secure(): nothing here is a secret")
        text = path.read_text()
        for call in LIST_CALL.findall(text):
            problems.append(f"{path.name}: {call.strip()} reads a secret out of a resource")
    settings = main_settings(root)
    for name in sorted(SECRET_SETTINGS & set(settings)):
        problems.append(f"main.bicep: the app setting {name} would hold a secret")
    redis_url = settings.get("REDIS_URL", "")
    if isinstance(redis_url, str) and "@" in redis_url:
        problems.append("main.bicep: REDIS_URL holds a user or password")
    return problems


def check_needed_resources(root: Path) -> list[str]:
    declared = templates(root)
    return [f"no {kind} ({why})" for kind, why in NEEDED_TYPES.items() if not resources_of(declared, kind)]


def check_redis(root: Path) -> list[str]:
    problems = []
    declared = templates(root)
    for path, _, redis in resources_of(declared, "Microsoft.Cache/redis"):
        properties = redis["config"].get("properties", {})
        expected = {
            "disableAccessKeyAuthentication": True,
            "enableNonSslPort": False,
            "minimumTlsVersion": "1.2",
        }
        for key, value in expected.items():
            if properties.get(key) != value:
                problems.append(f"{path.name}: Redis {key} is {properties.get(key)!r}, not {value!r}")
        if properties.get("redisConfiguration", {}).get("'aad-enabled'") != "true":
            problems.append(f"{path.name}: Redis has no Microsoft Entra authentication ('aad-enabled')")
    for path, _, assignment in resources_of(declared, "Microsoft.Cache/redis/accessPolicyAssignments"):
        properties = assignment["config"].get("properties", {})
        if properties.get("accessPolicyName") not in ("Data Contributor", "Data Owner"):
            problems.append(f"{path.name}: the access policy {properties.get('accessPolicyName')!r} cannot write")
        passed = accessor_path(param_passed(root, path.name, "principalId"))
        if properties.get("objectId") != "principalId" or passed != "identity.outputs.principalId":
            problems.append(f"{path.name}: the Redis access policy is not assigned to the managed identity")
    return problems


def check_web(root: Path) -> list[str]:
    problems = []
    for path, template, site in resources_of(templates(root), "Microsoft.Web/sites"):
        properties = site["config"].get("properties", {})
        config = properties.get("siteConfig", {})
        if properties.get("httpsOnly") is not True:
            problems.append(f"{path.name}: the web app is not https only")
        if config.get("minTlsVersion") not in ("1.2", "1.3"):
            problems.append(f"{path.name}: the web app's minimum TLS is {config.get('minTlsVersion')!r}")
        if config.get("ftpsState") != "Disabled":
            problems.append(f"{path.name}: FTP is {config.get('ftpsState')!r}, not Disabled")
        if resolved(template, config.get("healthCheckPath")) != health.HEALTH_PATH:
            problems.append(f"{path.name}: the health check path is not the sample's {health.HEALTH_PATH}")
        if site["config"].get("identity", {}).get("type") != "UserAssigned":
            problems.append(f"{path.name}: the web app has no user-assigned managed identity")
        command = config.get("appCommandLine", "")
        if "gunicorn.conf.py" not in command or "--workers" in command:
            problems.append(f"{path.name}: gunicorn does not take its worker count from gunicorn.conf.py")
        policies = {
            resource["config"]["name"]: resource["config"]["properties"].get("allow")
            for resource in template.get("resources", {}).values()
            if kind_of(resource) == "Microsoft.Web/sites/basicPublishingCredentialsPolicies"
        }
        if policies != {"ftp": False, "scm": False}:
            problems.append(f"{path.name}: publishing with a password is not off for FTP and SCM: {policies}")
    return problems


def check_app_registration(root: Path) -> list[str]:
    problems = []
    declared = templates(root)
    for path, template, app in resources_of(declared, "Microsoft.Graph/applications"):
        if "microsoftGraphV1" not in template.get("extensions", {}):
            problems.append(f"{path.name}: Microsoft Graph resources without `extension microsoftGraphV1`")
        redirects = app["config"].get("web", {}).get("redirectUris", [])
        if f"https://${{hostName}}{sample_settings.DEFAULT_REDIRECT_PATH}" not in redirects:
            problems.append(f"{path.name}: the redirect URI is not https://<web app host>/getAToken")
        if not app["config"].get("uniqueName"):
            problems.append(f"{path.name}: the application has no uniqueName")
        if app["config"].get("passwordCredentials") or app["config"].get("keyCredentials"):
            problems.append(f"{path.name}: the application has a secret or a certificate")
        scopes = [scope.get("value") for scope in app["config"].get("api", {}).get("oauth2PermissionScopes", [])]
        roles = [role.get("value") for role in app["config"].get("appRoles", [])]
        if "Todo.Read" not in scopes or "Jobs.Run" not in roles:
            problems.append(f"{path.name}: the web API lacks the scope Todo.Read or the app role Jobs.Run")
    for path, _, credential in resources_of(declared, "Microsoft.Graph/applications/federatedIdentityCredentials"):
        config = credential["config"]
        if config.get("audiences") != ["api://AzureADTokenExchange"]:
            problems.append(f"{path.name}: the federated credential's audience is {config.get('audiences')}")
        issuer = param_passed(root, path.name, config.get("issuer", ""))
        if issuer != "${environment().authentication.loginEndpoint}${tenantId}/v2.0":
            problems.append(f"{path.name}: the federated credential's issuer is {issuer!r}")
        subject = accessor_path(param_passed(root, path.name, config.get("subject", "")))
        if subject != "identity.outputs.principalId":
            problems.append(f"{path.name}: the federated credential's subject is {subject!r}, not the identity")
    return problems


def check_app_settings(root: Path) -> list[str]:
    problems = []
    settings = main_settings(root)
    for name in sorted(NEEDED_SETTINGS - set(settings)):
        problems.append(f"main.bicep: the app setting {name} is missing")
    sample_text = "".join(path.read_text() for path in [*(SAMPLE / "webapp").glob("*.py"), SAMPLE / "gunicorn.conf.py"])
    for name in settings:
        if not name.startswith("IDENTITY_") and name not in PLATFORM_SETTINGS and f'"{name}"' not in sample_text:
            problems.append(f"main.bicep: the app setting {name} is read by nothing in the sample")
    if settings.get("IDENTITY_REDIRECT_URI") != sample_settings.DEFAULT_REDIRECT_PATH:
        problems.append("main.bicep: IDENTITY_REDIRECT_URI is not the path registered on the app registration")
    if not str(settings.get("REDIS_URL", "")).startswith("rediss://"):
        problems.append("main.bicep: REDIS_URL is not TLS (rediss://)")
    if accessor_path(settings.get("TRUSTED_HOSTS")) != "web.outputs.hostName":
        problems.append("main.bicep: TRUSTED_HOSTS is not the web app's host name")
    for name in ("IDENTITY_MANAGED_IDENTITY", "AZURE_CLIENT_ID"):
        if accessor_path(settings.get(name)) != "identity.outputs.clientId":
            problems.append(f"main.bicep: {name} is not the managed identity's client id")
    main = parse(root / "main.bicep")
    allowed = next(
        (d["argument"] for d in main["parameters"]["appServiceSku"]["decorators"] if d["type"] == "allowed"), []
    )
    cores = main["variables"].get("coresBySku", {}).get("value", {})
    for sku in allowed:
        if sku not in cores:
            problems.append(f"main.bicep: no core count for the plan size {sku}, so no gunicorn worker count")
    return problems


def check_parameters_file(root: Path) -> list[str]:
    problems = []
    declared = parse(root / "main.bicep")["parameters"]
    given = json.loads((root / "main.parameters.json").read_text())["parameters"]
    for name in given:
        if name not in declared:
            problems.append(f"main.parameters.json: {name} is not a parameter of main.bicep")
    for name, parameter in declared.items():
        if parameter.get("default") is None and name not in given:
            problems.append(f"main.parameters.json: main.bicep's required {name} is not given")
    for name, item in given.items():
        if SECRET_NAME.search(name.lower()) or re.search(r"(?i)secret|password|credential", json.dumps(item)):
            problems.append(f"main.parameters.json: {name} looks like a secret")
    return problems


def check_bicepconfig(root: Path) -> list[str]:
    config = json.loads((root / "bicepconfig.json").read_text())
    extensions = config.get("extensions", {})
    problems = []
    for path, template in templates(root).items():
        for name in template.get("extensions", {}):
            if not str(extensions.get(name, "")).startswith("br:mcr.microsoft.com/bicep/extensions/microsoftgraph/"):
                problems.append(f"{path.name}: extension {name} is not Microsoft Graph's in bicepconfig.json")
    return problems


def check_azure_yaml(repo: Path) -> list[str]:
    problems = []
    project = yaml.safe_load((repo / "azure.yaml").read_text())
    infra = repo / project.get("infra", {}).get("path", "infra")
    if not (infra / "main.bicep").is_file():
        problems.append(f"azure.yaml: no {infra.name}/main.bicep")
    for name, service in project.get("services", {}).items():
        folder = (repo / service.get("project", "")).resolve()
        for needed in ("app.py", "requirements.txt", "gunicorn.conf.py"):
            if not (folder / needed).is_file():
                problems.append(f"azure.yaml: service {name}'s project {service.get('project')} has no {needed}")
        if service.get("host") != "appservice":
            problems.append(f"azure.yaml: service {name} is not hosted on App Service")
    return problems


CHECKS: list[Callable[[Path], list[str]]] = [
    check_modules_line_up,
    check_references_resolve,
    check_no_secrets,
    check_needed_resources,
    check_redis,
    check_web,
    check_app_registration,
    check_app_settings,
    check_parameters_file,
    check_bicepconfig,
]


@pytest.mark.parametrize("check", CHECKS, ids=lambda check: check.__name__)
def test_the_templates_pass_the_check(check: Callable[[Path], list[str]]) -> None:
    assert check(INFRA) == []


def test_azure_yaml_points_at_what_exists() -> None:
    assert check_azure_yaml(ROOT) == []


def test_every_bicep_file_parses_and_main_uses_every_module() -> None:
    parsed = templates(INFRA)
    assert INFRA / "main.bicep" in parsed and len(parsed) >= 8
    used = {module_target(INFRA / "main.bicep", m) for m in parsed[INFRA / "main.bicep"]["modules"].values()}
    assert used == {path.resolve() for path in parsed if path.parent.name == "modules"}


# --- Each check fails on a broken copy -----------------------------------------------

BROKEN = [
    # (file, text, replacement, check, what the check must say)
    (
        "main.bicep",
        "module vault 'modules/keyvault.bicep'",
        "module vault 'modules/vault.bicep'",
        check_modules_line_up,
        "missing file",
    ),
    (
        "main.bicep",
        "    principalName: identity.outputs.name\n",
        "    principalName: identity.outputs.name\n    sku: 'C1'\n",
        check_modules_line_up,
        "passes sku",
    ),
    ("main.bicep", "    principalName: identity.outputs.name\n", "", check_modules_line_up, "required principalName"),
    ("main.bicep", "vault.outputs.keyUri", "vault.outputs.keyUrl", check_modules_line_up, "not an output"),
    ("modules/redis.bicep", "parent: redis", "parent: cache", check_references_resolve, "parent cache"),
    (
        "main.bicep",
        "'rediss://${redis.outputs.hostName}",
        "'rediss://${cache.outputs.hostName}",
        check_references_resolve,
        "cache.outputs.hostName names nothing",
    ),
    (
        "main.bicep",
        "  scope: rg\n  params: {\n    name: 'kv-",
        "  scope: group\n  params: {\n    name: 'kv-",
        check_references_resolve,
        "scope group",
    ),
    (
        "modules/keyvault.bicep",
        "output keyUri string = derivationKey.properties.keyUri",
        "output signingKey string = derivationKey.properties.keyUri",
        check_no_secrets,
        "signingKey looks like a secret",
    ),
    ("modules/identity.bicep", "param name string", "@secure()\nparam name string", check_no_secrets, "@secure()"),
    (
        "modules/web.bicep",
        "output name string = site.name",
        "output name string = site.listPublishingCredentials().id",
        check_no_secrets,
        "reads a secret",
    ),
    (
        "modules/redis.bicep",
        "output name string = redis.name",
        "output name string = redis.listKeys().primaryKey",
        check_no_secrets,
        "listKeys(",
    ),
    (
        "main.bicep",
        "      BEHIND_PROXY: 'true'\n",
        "      BEHIND_PROXY: 'true'\n      SECRET_KEY: 'x'\n",
        check_no_secrets,
        "SECRET_KEY would hold a secret",
    ),
    (
        "main.bicep",
        "      REDIS_URL: 'rediss://",
        "      REDIS_URL: 'rediss://:${redisKey}@",
        check_no_secrets,
        "REDIS_URL holds a user or password",
    ),
    (
        "modules/redis.bicep",
        "disableAccessKeyAuthentication: true",
        "disableAccessKeyAuthentication: false",
        check_redis,
        "disableAccessKeyAuthentication",
    ),
    ("modules/redis.bicep", "'aad-enabled': 'true'", "'aad-enabled': 'false'", check_redis, "aad-enabled"),
    ("modules/redis.bicep", "enableNonSslPort: false", "enableNonSslPort: true", check_redis, "enableNonSslPort"),
    ("modules/redis.bicep", "minimumTlsVersion: '1.2'", "minimumTlsVersion: '1.0'", check_redis, "minimumTlsVersion"),
    ("modules/redis.bicep", "'Data Contributor'", "'Data Reader'", check_redis, "cannot write"),
    (
        "main.bicep",
        "    principalId: identity.outputs.principalId\n    principalName",
        "    principalId: registration.outputs.servicePrincipalId\n    principalName",
        check_redis,
        "not assigned",
    ),
    (
        "modules/redis.bicep",
        "resource sessions 'Microsoft.Cache/redis/accessPolicyAssignments@2024-11-01'",
        "resource sessions 'Microsoft.Cache/redis/firewallRules@2024-11-01'",
        check_needed_resources,
        "accessPolicyAssignments",
    ),
    (
        "modules/appregistration.bicep",
        "  resource managedIdentityCredential 'federatedIdentityCredentials@v1.0'",
        "  resource managedIdentityCredential 'extensionProperties@v1.0'",
        check_needed_resources,
        "federatedIdentityCredentials",
    ),
    ("modules/web.bicep", "httpsOnly: true", "httpsOnly: false", check_web, "https only"),
    ("modules/web.bicep", "      minTlsVersion: '1.2'", "      minTlsVersion: '1.0'", check_web, "minimum TLS"),
    ("modules/web.bicep", "ftpsState: 'Disabled'", "ftpsState: 'AllAllowed'", check_web, "FTP is"),
    (
        "modules/web.bicep",
        "param healthCheckPath string = '/health'",
        "param healthCheckPath string = '/'",
        check_web,
        "health check path",
    ),
    ("modules/web.bicep", "--timeout 120 --config", "--timeout 120 --workers 2 --config", check_web, "worker count"),
    (
        "modules/web.bicep",
        "  name: 'scm'\n  properties: {\n    allow: false",
        "  name: 'scm'\n  properties: {\n    allow: true",
        check_web,
        "publishing with a password",
    ),
    (
        "modules/appregistration.bicep",
        "audiences: ['api://AzureADTokenExchange']",
        "audiences: ['api://anything']",
        check_app_registration,
        "audience",
    ),
    (
        "main.bicep",
        "issuer: '${environment().authentication.loginEndpoint}${tenantId}/v2.0'",
        "issuer: 'https://token.actions.githubusercontent.com'",
        check_app_registration,
        "issuer",
    ),
    (
        "main.bicep",
        "    managedIdentityPrincipalId: identity.outputs.principalId",
        "    managedIdentityPrincipalId: identity.outputs.clientId",
        check_app_registration,
        "subject",
    ),
    (
        "modules/appregistration.bicep",
        "      'https://${hostName}/getAToken'\n",
        "",
        check_app_registration,
        "redirect URI",
    ),
    ("modules/appregistration.bicep", "extension microsoftGraphV1\n", "", check_app_registration, "extension"),
    ("main.bicep", "      TRUSTED_HOSTS: web.outputs.hostName\n", "", check_app_settings, "TRUSTED_HOSTS is missing"),
    (
        "main.bicep",
        "      AZURE_CLIENT_ID: identity.outputs.clientId",
        "      AZURE_CLIENT_ID: identity.outputs.principalId",
        check_app_settings,
        "AZURE_CLIENT_ID is not the managed identity's client id",
    ),
    ("main.bicep", "      REDIS_URL: 'rediss://", "      REDIS_URL: 'redis://", check_app_settings, "not TLS"),
    (
        "main.bicep",
        "      BEHIND_PROXY: 'true'\n",
        "      BEHIND_PROXY: 'true'\n      REDIS_PASSWORDLESS: 'true'\n",
        check_app_settings,
        "REDIS_PASSWORDLESS is read by nothing",
    ),
    ("main.bicep", "  P3v3: 8\n", "", check_app_settings, "P3v3"),
    ("main.parameters.json", '"signInAudience"', '"signinAudience"', check_parameters_file, "signinAudience"),
    ("bicepconfig.json", "microsoftGraphV1", "msGraph", check_bicepconfig, "extension microsoftGraphV1"),
]


@pytest.fixture
def infra_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "infra"
    shutil.copytree(INFRA, copy)
    return copy


@pytest.mark.parametrize(
    ("file", "text", "replacement", "check", "expected"),
    BROKEN,
    ids=[f"{case[3].__name__}-{case[4]}" for case in BROKEN],
)
def test_a_broken_copy_fails_the_check(
    infra_copy: Path, file: str, text: str, replacement: str, check: Callable[[Path], list[str]], expected: str
) -> None:
    assert check(infra_copy) == []  # the copy is as good as the original
    target = infra_copy / file
    original = target.read_text()
    assert original.count(text) == 1, f"{file} no longer holds {text!r}: update this case"
    target.write_text(original.replace(text, replacement))
    problems = check(infra_copy)
    assert any(expected in problem for problem in problems), problems


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda y: y["services"]["web"].update(project="./nowhere"), "has no app.py"),
        (lambda y: y.update(infra={"path": "elsewhere"}), "no elsewhere/main.bicep"),
        (lambda y: y["services"]["web"].update(host="containerapp"), "not hosted on App Service"),
    ],
)
def test_a_broken_azure_yaml_fails_the_check(tmp_path: Path, edit: Callable[[Any], None], expected: str) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(INFRA, repo / "infra")
    shutil.copytree(SAMPLE, repo / "sample", ignore=shutil.ignore_patterns(".mypy_cache", "__pycache__"))
    project = yaml.safe_load((ROOT / "azure.yaml").read_text())
    (repo / "azure.yaml").write_text(yaml.safe_dump(project))
    assert check_azure_yaml(repo) == []
    edit(project)
    (repo / "azure.yaml").write_text(yaml.safe_dump(project))
    assert any(expected in problem for problem in check_azure_yaml(repo))
