from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AuthenticationStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AUTHENTICATION_STATUS_UNSPECIFIED: _ClassVar[AuthenticationStatus]
    AUTHENTICATION_STATUS_PASS: _ClassVar[AuthenticationStatus]
    AUTHENTICATION_STATUS_FAIL: _ClassVar[AuthenticationStatus]
    AUTHENTICATION_STATUS_ERROR: _ClassVar[AuthenticationStatus]

class AccountingStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ACCOUNTING_STATUS_UNSPECIFIED: _ClassVar[AccountingStatus]
    ACCOUNTING_STATUS_SUCCESS: _ClassVar[AccountingStatus]
    ACCOUNTING_STATUS_ERROR: _ClassVar[AccountingStatus]
    ACCOUNTING_STATUS_FOLLOW: _ClassVar[AccountingStatus]

class AuthorizationStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AUTHORIZATION_STATUS_UNSPECIFIED: _ClassVar[AuthorizationStatus]
    AUTHORIZATION_STATUS_PASS_ADD: _ClassVar[AuthorizationStatus]
    AUTHORIZATION_STATUS_PASS_REPL: _ClassVar[AuthorizationStatus]
    AUTHORIZATION_STATUS_FAIL: _ClassVar[AuthorizationStatus]
    AUTHORIZATION_STATUS_ERROR: _ClassVar[AuthorizationStatus]
    AUTHORIZATION_STATUS_FOLLOW: _ClassVar[AuthorizationStatus]

class AuthorizationAuthenticationContext(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AUTHORIZATION_AUTHENTICATION_CONTEXT_UNSPECIFIED: _ClassVar[AuthorizationAuthenticationContext]
    AUTHORIZATION_AUTHENTICATION_CONTEXT_TACACS_ASCII: _ClassVar[AuthorizationAuthenticationContext]
    AUTHORIZATION_AUTHENTICATION_CONTEXT_TACACS_PAP: _ClassVar[AuthorizationAuthenticationContext]
    AUTHORIZATION_AUTHENTICATION_CONTEXT_UNAUTHENTICATED: _ClassVar[AuthorizationAuthenticationContext]
AUTHENTICATION_STATUS_UNSPECIFIED: AuthenticationStatus
AUTHENTICATION_STATUS_PASS: AuthenticationStatus
AUTHENTICATION_STATUS_FAIL: AuthenticationStatus
AUTHENTICATION_STATUS_ERROR: AuthenticationStatus
ACCOUNTING_STATUS_UNSPECIFIED: AccountingStatus
ACCOUNTING_STATUS_SUCCESS: AccountingStatus
ACCOUNTING_STATUS_ERROR: AccountingStatus
ACCOUNTING_STATUS_FOLLOW: AccountingStatus
AUTHORIZATION_STATUS_UNSPECIFIED: AuthorizationStatus
AUTHORIZATION_STATUS_PASS_ADD: AuthorizationStatus
AUTHORIZATION_STATUS_PASS_REPL: AuthorizationStatus
AUTHORIZATION_STATUS_FAIL: AuthorizationStatus
AUTHORIZATION_STATUS_ERROR: AuthorizationStatus
AUTHORIZATION_STATUS_FOLLOW: AuthorizationStatus
AUTHORIZATION_AUTHENTICATION_CONTEXT_UNSPECIFIED: AuthorizationAuthenticationContext
AUTHORIZATION_AUTHENTICATION_CONTEXT_TACACS_ASCII: AuthorizationAuthenticationContext
AUTHORIZATION_AUTHENTICATION_CONTEXT_TACACS_PAP: AuthorizationAuthenticationContext
AUTHORIZATION_AUTHENTICATION_CONTEXT_UNAUTHENTICATED: AuthorizationAuthenticationContext

class ServiceError(_message.Message):
    __slots__ = ("message", "server", "retriable")
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    SERVER_FIELD_NUMBER: _ClassVar[int]
    RETRIABLE_FIELD_NUMBER: _ClassVar[int]
    message: str
    server: str
    retriable: bool
    def __init__(self, message: _Optional[str] = ..., server: _Optional[str] = ..., retriable: _Optional[bool] = ...) -> None: ...

class PapAuthenticationRequest(_message.Message):
    __slots__ = ("user", "password", "port", "remote_address", "privilege_level")
    USER_FIELD_NUMBER: _ClassVar[int]
    PASSWORD_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    REMOTE_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    PRIVILEGE_LEVEL_FIELD_NUMBER: _ClassVar[int]
    user: str
    password: bytes
    port: str
    remote_address: str
    privilege_level: int
    def __init__(self, user: _Optional[str] = ..., password: _Optional[bytes] = ..., port: _Optional[str] = ..., remote_address: _Optional[str] = ..., privilege_level: _Optional[int] = ...) -> None: ...

class PapAuthenticationResponse(_message.Message):
    __slots__ = ("server", "status", "server_message", "data")
    SERVER_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SERVER_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    server: str
    status: AuthenticationStatus
    server_message: str
    data: bytes
    def __init__(self, server: _Optional[str] = ..., status: _Optional[_Union[AuthenticationStatus, str]] = ..., server_message: _Optional[str] = ..., data: _Optional[bytes] = ...) -> None: ...

class PapAuthenticationReply(_message.Message):
    __slots__ = ("response", "error")
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    response: PapAuthenticationResponse
    error: ServiceError
    def __init__(self, response: _Optional[_Union[PapAuthenticationResponse, _Mapping]] = ..., error: _Optional[_Union[ServiceError, _Mapping]] = ...) -> None: ...

class AccountingRequest(_message.Message):
    __slots__ = ("user", "port", "remote_address", "command", "command_arguments")
    USER_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    REMOTE_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    COMMAND_ARGUMENTS_FIELD_NUMBER: _ClassVar[int]
    user: str
    port: str
    remote_address: str
    command: str
    command_arguments: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, user: _Optional[str] = ..., port: _Optional[str] = ..., remote_address: _Optional[str] = ..., command: _Optional[str] = ..., command_arguments: _Optional[_Iterable[str]] = ...) -> None: ...

class AccountingResponse(_message.Message):
    __slots__ = ("server", "status", "server_message", "data")
    SERVER_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SERVER_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    server: str
    status: AccountingStatus
    server_message: str
    data: str
    def __init__(self, server: _Optional[str] = ..., status: _Optional[_Union[AccountingStatus, str]] = ..., server_message: _Optional[str] = ..., data: _Optional[str] = ...) -> None: ...

class AccountingReply(_message.Message):
    __slots__ = ("response", "error")
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    response: AccountingResponse
    error: ServiceError
    def __init__(self, response: _Optional[_Union[AccountingResponse, _Mapping]] = ..., error: _Optional[_Union[ServiceError, _Mapping]] = ...) -> None: ...

class AuthorizationArg(_message.Message):
    __slots__ = ("name", "mandatory", "value")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MANDATORY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    name: str
    mandatory: bool
    value: str
    def __init__(self, name: _Optional[str] = ..., mandatory: _Optional[bool] = ..., value: _Optional[str] = ...) -> None: ...

class AuthorizationRequest(_message.Message):
    __slots__ = ("user", "port", "remote_address", "privilege_level", "args", "authentication_context")
    USER_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    REMOTE_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    PRIVILEGE_LEVEL_FIELD_NUMBER: _ClassVar[int]
    ARGS_FIELD_NUMBER: _ClassVar[int]
    AUTHENTICATION_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    user: str
    port: str
    remote_address: str
    privilege_level: int
    args: _containers.RepeatedCompositeFieldContainer[AuthorizationArg]
    authentication_context: AuthorizationAuthenticationContext
    def __init__(self, user: _Optional[str] = ..., port: _Optional[str] = ..., remote_address: _Optional[str] = ..., privilege_level: _Optional[int] = ..., args: _Optional[_Iterable[_Union[AuthorizationArg, _Mapping]]] = ..., authentication_context: _Optional[_Union[AuthorizationAuthenticationContext, str]] = ...) -> None: ...

class AuthorizationResponse(_message.Message):
    __slots__ = ("server", "status", "server_message", "args", "data")
    SERVER_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    SERVER_MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ARGS_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    server: str
    status: AuthorizationStatus
    server_message: str
    args: _containers.RepeatedCompositeFieldContainer[AuthorizationArg]
    data: str
    def __init__(self, server: _Optional[str] = ..., status: _Optional[_Union[AuthorizationStatus, str]] = ..., server_message: _Optional[str] = ..., args: _Optional[_Iterable[_Union[AuthorizationArg, _Mapping]]] = ..., data: _Optional[str] = ...) -> None: ...

class AuthorizationReply(_message.Message):
    __slots__ = ("response", "error")
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    response: AuthorizationResponse
    error: ServiceError
    def __init__(self, response: _Optional[_Union[AuthorizationResponse, _Mapping]] = ..., error: _Optional[_Union[ServiceError, _Mapping]] = ...) -> None: ...
