"""REST API of accounts: my API tokens and who I am."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from accounts import selectors, services
from accounts.permissions import FromSession, FromSessionOrThisToken
from accounts.roles import Role, user_roles
from core.api import BaseApi, get_or_404


@extend_schema(tags=["tokens"])
class TokenListApi(BaseApi):
    """My API tokens (their keys are never shown again): listed and created from a logged-in
    browser session, by any user with or without a role; never with a token."""

    permissions = {"GET": FromSession, "POST": FromSession}

    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=100, required=False, allow_blank=True, default="token")

        class Meta:
            ref_name = "TokenCreate"

    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        name = serializers.CharField()
        prefix = serializers.CharField(help_text="The key's first characters, to recognise it.")
        created_at = serializers.DateTimeField()
        last_used_at = serializers.DateTimeField(allow_null=True)
        revoked_at = serializers.DateTimeField(allow_null=True)

        class Meta:
            ref_name = "Token"

    class CreatedSerializer(OutputSerializer):
        key = serializers.CharField(help_text="Shown this once; only its hash is stored.")

        class Meta:
            ref_name = "TokenCreated"

    @extend_schema(responses=OutputSerializer(many=True), summary="List my API tokens")
    def get(self, request: Request) -> Response:
        return self.paginated(selectors.api_token_list(user=request.user), self.OutputSerializer)

    @extend_schema(request=InputSerializer, responses={201: CreatedSerializer}, summary="Create an API token")
    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        token, key = services.api_token_create(user=request.user, **serializer.validated_data)
        data = self.CreatedSerializer({**self.OutputSerializer(token).data, "key": key}).data
        return Response(data, status=status.HTTP_201_CREATED)


@extend_schema(tags=["tokens"])
class TokenDetailApi(BaseApi):
    """Revoke one of my API tokens: any of them from a logged-in browser session; with a
    token, only that token itself."""

    permissions = {"DELETE": FromSessionOrThisToken}

    @extend_schema(responses={204: None}, summary="Revoke one of my API tokens")
    def delete(self, request: Request, pk: int) -> Response:
        token = get_or_404(selectors.api_token_get(user=request.user, pk=pk), "token")
        services.api_token_revoke(token=token)
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema(tags=["me"])
class MeApi(BaseApi):
    """The logged-in user and their roles."""

    permissions = {"GET": IsAuthenticated}

    class OutputSerializer(serializers.Serializer):
        username = serializers.CharField()
        roles = serializers.ListField(child=serializers.ChoiceField(choices=[r.value for r in Role]))

        class Meta:
            ref_name = "Me"

    @extend_schema(responses=OutputSerializer, summary="Who am I")
    def get(self, request: Request) -> Response:
        roles = sorted(role.value for role in user_roles(request.user))
        return Response(self.OutputSerializer({"username": request.user.get_username(), "roles": roles}).data)
