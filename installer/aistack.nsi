; The aistack installer: per-user, no admin rights.
;
;   makensis -DVERSION=0.1.0 -DVI_VERSION=0.1.0.0 -DAPP_DIR=dist/aistack -DOUT_FILE=dist/aistack-0.1.0-setup.exe [-DICON=assets/icons/aistack.ico] aistack.nsi
;   (installer/build.py --installer passes these)
;
; A 64-bit installer (Target amd64-unicode: the app is 64-bit, and makensis's default
; 32-bit stub would not even start where only 64-bit programs run).
; Installs the PyInstaller onedir into %LOCALAPPDATA%\Programs\aistack, adds a Start-menu
; shortcut and a per-user uninstall entry (HKCU), optionally starts aistack at login (the
; same HKCU Run value the tray's "Start at login" toggle writes), and launches it at the
; end: the finish page's check box, or after a silent install (/S) unless /NOSTART is given.
; Running it over an older version stops the running aistack (tray app, server and their
; runner processes) and replaces the program files in place; models and settings live in
; the data folder (%LOCALAPPDATA%\aistack, platformdirs' user_data_dir in models/settings.py)
; and are not touched.
; The uninstaller stops aistack, removes the Run value and the shortcut, and asks whether
; to keep the downloaded models; a silent uninstall keeps them unless given /REMOVEMODELS.

Target amd64-unicode
ManifestDPIAware true
RequestExecutionLevel user
!ifdef NO_COMPRESS
  SetCompress off  ; tests: the payload stored as it is, compiled in seconds
!else
  SetCompressor /SOLID lzma
!endif

!ifndef VERSION
  !error "define VERSION (the package version), e.g. -DVERSION=0.1.0"
!endif
!ifndef APP_DIR
  !error "define APP_DIR, the PyInstaller onedir folder (dist/aistack)"
!endif
!ifndef OUT_FILE
  !define OUT_FILE "aistack-${VERSION}-setup.exe"
!endif

!define APP_NAME "aistack"
!define PUBLISHER "aistack"
!define APP_EXE "aistack.exe"
!define CLI_EXE "aistack-cli.exe"
!define UNINSTALL_KEY "Software\Microsoft\Windows\CurrentVersion\Uninstall\${APP_NAME}"
; Start at login: the value app/autostart.py writes and reads (keep the two in step).
!define RUN_KEY "Software\Microsoft\Windows\CurrentVersion\Run"
!define RUN_VALUE "aistack"

; VIProductVersion needs four numbers (0.1.0 -> 0.1.0.0); build.py derives them from VERSION.
!ifndef VI_VERSION
  !error "define VI_VERSION, the version as four numbers, e.g. -DVI_VERSION=0.1.0.0"
!endif

Name "${APP_NAME} ${VERSION}"
OutFile "${OUT_FILE}"
InstallDir "$LOCALAPPDATA\Programs\${APP_NAME}"
InstallDirRegKey HKCU "${UNINSTALL_KEY}" "InstallLocation"
BrandingText "${APP_NAME} ${VERSION}"

VIProductVersion "${VI_VERSION}"
VIAddVersionKey "ProductName" "${APP_NAME}"
VIAddVersionKey "ProductVersion" "${VERSION}"
VIAddVersionKey "FileVersion" "${VERSION}"
VIAddVersionKey "FileDescription" "${APP_NAME} installer"
VIAddVersionKey "CompanyName" "${PUBLISHER}"
VIAddVersionKey "LegalCopyright" "MIT licence"

!include "MUI2.nsh"
!include "LogicLib.nsh"
!include "FileFunc.nsh"

!ifdef ICON
  !define MUI_ICON "${ICON}"
  !define MUI_UNICON "${ICON}"
!endif
!define MUI_ABORTWARNING
!define MUI_COMPONENTSPAGE_NODESC
!define MUI_FINISHPAGE_RUN "$INSTDIR\${APP_EXE}"
!define MUI_FINISHPAGE_RUN_TEXT "Start ${APP_NAME} now"

!insertmacro MUI_PAGE_WELCOME
!insertmacro MUI_PAGE_DIRECTORY
!insertmacro MUI_PAGE_COMPONENTS
!insertmacro MUI_PAGE_INSTFILES
!insertmacro MUI_PAGE_FINISH
!insertmacro MUI_UNPAGE_CONFIRM
!insertmacro MUI_UNPAGE_INSTFILES
!insertmacro MUI_LANGUAGE "English"

; Stop a running aistack (tray app, headless server and their runner processes), politely first.
; By image name, which the runners share with the program that started them, so no /T is needed
; (Wine's taskkill refuses /T and would then stop nothing).
!macro StopAistack
  DetailPrint "Stopping ${APP_NAME} if it is running..."
  nsExec::Exec '"$SYSDIR\taskkill.exe" /IM ${APP_EXE}'
  Pop $0
  nsExec::Exec '"$SYSDIR\taskkill.exe" /IM ${CLI_EXE}'
  Pop $0
  Sleep 2000
  nsExec::Exec '"$SYSDIR\taskkill.exe" /F /IM ${APP_EXE}'
  Pop $0
  nsExec::Exec '"$SYSDIR\taskkill.exe" /F /IM ${CLI_EXE}'
  Pop $0
  Sleep 1000
!macroend

Section "${APP_NAME} (required)" SecApp
  SectionIn RO
  !insertmacro StopAistack
  SetOutPath "$INSTDIR"
  ; Upgrade in place: drop the old program files so no stale library survives, then copy the new ones.
  RMDir /r "$INSTDIR\_internal"
  File /r "${APP_DIR}\*"
  WriteUninstaller "$INSTDIR\uninstall.exe"

  CreateShortCut "$SMPROGRAMS\${APP_NAME}.lnk" "$INSTDIR\${APP_EXE}" "" "$INSTDIR\${APP_EXE}" 0

  WriteRegStr HKCU "${UNINSTALL_KEY}" "DisplayName" "${APP_NAME}"
  WriteRegStr HKCU "${UNINSTALL_KEY}" "DisplayVersion" "${VERSION}"
  WriteRegStr HKCU "${UNINSTALL_KEY}" "Publisher" "${PUBLISHER}"
  WriteRegStr HKCU "${UNINSTALL_KEY}" "DisplayIcon" "$INSTDIR\${APP_EXE}"
  WriteRegStr HKCU "${UNINSTALL_KEY}" "InstallLocation" "$INSTDIR"
  WriteRegStr HKCU "${UNINSTALL_KEY}" "UninstallString" '"$INSTDIR\uninstall.exe"'
  WriteRegStr HKCU "${UNINSTALL_KEY}" "QuietUninstallString" '"$INSTDIR\uninstall.exe" /S'
  WriteRegDWORD HKCU "${UNINSTALL_KEY}" "NoModify" 1
  WriteRegDWORD HKCU "${UNINSTALL_KEY}" "NoRepair" 1
  ${GetSize} "$INSTDIR" "/S=0K" $0 $1 $2
  WriteRegDWORD HKCU "${UNINSTALL_KEY}" "EstimatedSize" "$0"
SectionEnd

Section /o "Start ${APP_NAME} when I log in" SecAutostart
  WriteRegStr HKCU "${RUN_KEY}" "${RUN_VALUE}" '"$INSTDIR\${APP_EXE}"'
SectionEnd

; After a silent install, start the app as the finish page's check box does; /NOSTART says not to.
Function .onInstSuccess
  ${If} ${Silent}
    ${GetParameters} $R0
    ClearErrors
    ${GetOptions} $R0 "/NOSTART" $R1
    ${If} ${Errors}
      Exec '"$INSTDIR\${APP_EXE}"'
    ${EndIf}
  ${EndIf}
FunctionEnd

Function .onInit
  ; An upgrade keeps the user's choice of start at login.
  ReadRegStr $0 HKCU "${RUN_KEY}" "${RUN_VALUE}"
  ${If} $0 != ""
    SectionGetFlags ${SecAutostart} $1
    IntOp $1 $1 | ${SF_SELECTED}
    SectionSetFlags ${SecAutostart} $1
  ${EndIf}
FunctionEnd

Section "Uninstall"
  !insertmacro StopAistack
  DeleteRegValue HKCU "${RUN_KEY}" "${RUN_VALUE}"
  Delete "$SMPROGRAMS\${APP_NAME}.lnk"
  RMDir /r "$INSTDIR\_internal"
  Delete "$INSTDIR\${APP_EXE}"
  Delete "$INSTDIR\${CLI_EXE}"
  Delete "$INSTDIR\uninstall.exe"
  RMDir "$INSTDIR"

  ; Models are large downloads: keep them unless the user says otherwise (a silent uninstall keeps them
  ; unless given /REMOVEMODELS).
  IfFileExists "$LOCALAPPDATA\${APP_NAME}\*.*" 0 models_done
  ${un.GetParameters} $R0
  ClearErrors
  ${un.GetOptions} $R0 "/REMOVEMODELS" $R1
  IfErrors 0 remove_models
  MessageBox MB_YESNO|MB_ICONQUESTION "Keep your downloaded models and settings in $LOCALAPPDATA\${APP_NAME}?$\r$\n$\r$\nChoose No to delete them." /SD IDYES IDYES models_done
  remove_models:
  RMDir /r "$LOCALAPPDATA\${APP_NAME}"
  models_done:
  ; Last, so an uninstall that stopped half-way can be run again from Settings.
  DeleteRegKey HKCU "${UNINSTALL_KEY}"
SectionEnd
