from django.core.management.base import BaseCommand, CommandError

from billing.services.api_tokens import ApiTokenError, api_tokens_revoke


class Command(BaseCommand):
    help = "Revoke every API token of a user and print how many were revoked."

    def add_arguments(self, parser):
        parser.add_argument("username")

    def handle(self, *args, **options):
        try:
            count = api_tokens_revoke(username=options["username"])
        except ApiTokenError as error:
            raise CommandError(str(error)) from error
        self.stdout.write(f"Revoked {count} token(s) of {options['username']}.")
