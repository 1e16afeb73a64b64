"""Log in with CyberArk's own Python SDK (ark-sdk-python 2.1.x), as one of its users would.

Runs in the SDK's own virtual environment (``.venv-ark``, made by scripts/setup.sh), never
in the project's: ``.venv-ark/bin/python ark_login.py '<json settings>'``. Settings:

* ``identity_url``, ``username``, ``password``, ``mfa`` (the SDK's ``identity_mfa_method``:
  ``otp``, ``pf``, ``sms``, ``email``...), ``ca_file`` (the emulator's CA);
* ``person`` (the person at the terminal, for the SDK's interactive mode) with
  ``control_url`` (the emulator's ``/_emulator`` routes) and ``key`` (the user's name there):
  ``type_code`` types the code the user received, ``match_number`` reads the number the SDK
  shows and taps it on the phone; absent, the SDK runs non-interactively;
* ``after``: ``service_url`` (what a client built on the SDK does next: derive a service URL
  and the tenant id from the token's claims).

Prints one JSON object: the token, its lifetime, the refresh token's presence and, for
``service_url``, the URL.
"""

import json
import re
import sys
import time

import inquirer
import requests
from ark_sdk_python.auth import ArkISPAuth
from ark_sdk_python.common import ArkSystemConfig
from ark_sdk_python.common.isp import ArkISPServiceClient
from ark_sdk_python.models.auth import (
    ArkAuthMethod,
    ArkAuthProfile,
    ArkSecret,
    IdentityArkAuthMethodSettings,
)

settings = json.loads(sys.argv[1])
NUMBER = re.compile(r"with a value of \[(\d+)\]")


def scripted_prompt(questions, render=None):
    """The person at the terminal: answers the SDK's inquirer prompts."""
    answers = {}
    for question in questions:
        if isinstance(question, inquirer.List):
            answers[question.name] = question.default  # the configured MFA method
            continue
        control = settings["control_url"] + "/_emulator"
        key = settings["key"]
        shown = NUMBER.search(str(question.message))
        if settings["person"] == "match_number" and shown:
            # Tap the number the SDK shows on the phone, then wait at the prompt (the SDK
            # polls meanwhile and ends this prompt's process when the login completes).
            requests.post(
                f"{control}/oob/{key}/approve",
                json={"number": shown[1]},
                verify=settings["ca_file"],
                timeout=10,
            ).raise_for_status()
            time.sleep(600)
        for _ in range(100):  # the code arrives once StartOOB has run
            got = requests.get(f"{control}/code/{key}", verify=settings["ca_file"], timeout=10)
            if got.status_code == 200:
                answers[question.name] = got.json()["code"]
                break
            time.sleep(0.1)
    return answers


ArkSystemConfig.disable_color()
ArkSystemConfig.set_trusted_certificate(settings["ca_file"])
interactive = "person" in settings
if interactive:
    inquirer.prompt = scripted_prompt
    ArkSystemConfig.enable_interactive()
else:
    ArkSystemConfig.disable_interactive()

auth = ArkISPAuth(cache_authentication=False)
token = auth.authenticate(
    auth_profile=ArkAuthProfile(
        username=settings["username"],
        auth_method=ArkAuthMethod.Identity,
        auth_method_settings=IdentityArkAuthMethodSettings(
            identity_url=settings["identity_url"],
            identity_mfa_method=settings["mfa"],
            identity_mfa_interactive=interactive,
        ),
    ),
    secret=ArkSecret(secret=settings["password"]) if settings.get("password") else None,
)
out = {
    "token": token.token.get_secret_value(),
    "username": token.username,
    "endpoint": token.endpoint,
    "has_refresh_token": bool(token.refresh_token),
}
if settings.get("after") == "service_url":
    client = ArkISPServiceClient.from_isp_auth(auth, "uap")
    out["service_url"] = client.base_url if hasattr(client, "base_url") else None
    out["tenant_id"] = client.tenant_id
print(json.dumps(out))
